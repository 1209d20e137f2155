"""Chain intelligence pictures: the Guangdong gap map and the insights page's assets."""
