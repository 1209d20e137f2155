"""The demo world's fixed data: its password and mail domain, fictional codes and names.

Every demo organization gets a fictional USCC that is checksum-valid (GB 32100) yet can belong to
no real company: characters 9–17 of a real code are a GB 11714 organization code whose last
character is its own check digit (0–9 or X); demo codes put ``Y`` there. They also read
``DM`` at characters 9–10, which is how ``--reset`` finds the previous demo world.

Trade names are two characters of :data:`NAME_PARTS` and a suffix of the supplier's domain; the
cities' weights follow where Guangdong's auto-parts industry is.
"""

from __future__ import annotations

from typing import Any

from market import uscc

DEMO_PASSWORD = "strongchain-demo-2026"  # noqa: S105  (a documented demo password)
DEMO_EMAIL_DOMAIN = "demo.test"  # reserved TLD (RFC 2606): never a real mailbox
# "91" + division (6) + "DM" + serial (6) + "Y" + check: see the module docstring.
DEMO_USCC_LIKE = "91______DM______Y_"
# The demo buyers' plants (reference-data ids): buyer@demo.test buys for the first.
BUYER_PLANT, SECOND_BUYER_PLANT = "gac-honda-huangpu", "byd-pingshan"
BATCH = 1000
JITTER_KM = 8.0
KM_PER_DEGREE = 111.32

# Where the auto-parts industry is: relative weights of Guangdong's cities for demo suppliers.
CITY_WEIGHTS = {
    "440100": 18, "440300": 16, "440600": 14, "441900": 12, "441300": 7, "442000": 6,
    "440700": 5, "441200": 5, "440400": 4, "441800": 2.5, "440500": 2, "440200": 1.5,
    "441600": 1.5, "441500": 1.5, "441400": 1, "441700": 1, "440800": 1, "440900": 1,
    "445200": 1, "445100": 0.8, "445300": 0.8,
}  # fmt: skip
# A few sites are outside the province (the ledger marks their purchases OUT_OF_PROVINCE).
OUT_OF_PROVINCE = (
    ("430100", "长沙", "Changsha", 28.228, 112.939),
    ("450100", "南宁", "Nanning", 22.817, 108.366),
    ("360700", "赣州", "Ganzhou", 25.831, 114.935),
    ("350200", "厦门", "Xiamen", 24.480, 118.089),
    ("420100", "武汉", "Wuhan", 30.593, 114.305),
    ("320500", "苏州", "Suzhou", 31.299, 120.585),
)
# Fictional trade names: two characters from this list (with pinyin for the English name).
NAME_PARTS = (
    ("恒", "Heng"), ("锐", "Rui"), ("鑫", "Xin"), ("达", "Da"), ("华", "Hua"), ("瑞", "Rui"),
    ("宏", "Hong"), ("盛", "Sheng"), ("泰", "Tai"), ("丰", "Feng"), ("源", "Yuan"),
    ("晟", "Sheng"), ("拓", "Tuo"), ("骏", "Jun"), ("嘉", "Jia"), ("科", "Ke"), ("迅", "Xun"),
    ("凯", "Kai"), ("博", "Bo"), ("联", "Lian"), ("精", "Jing"), ("诚", "Cheng"), ("永", "Yong"),
    ("信", "Xin"), ("德", "De"), ("创", "Chuang"), ("力", "Li"), ("通", "Tong"), ("立", "Li"),
    ("安", "An"), ("捷", "Jie"), ("峰", "Feng"), ("远", "Yuan"), ("明", "Ming"), ("昊", "Hao"),
    ("腾", "Teng"), ("弘", "Hong"), ("毅", "Yi"), ("卓", "Zhuo"), ("越", "Yue"),
)  # fmt: skip
DOMAINS: dict[str, dict[str, Any]] = {
    "powertrain": {
        "weight": 25,
        "suffixes": (("动力科技", "Power Technology"), ("电驱系统", "E-Drive Systems"),
                     ("新能源科技", "New Energy Technology")),
        "processes": ("machining", "die casting", "winding", "cell assembly", "module assembly",
                      "heat treatment", "EOL testing", "laser welding"),
        "unit": "sets",
    },
    "chassis": {
        "weight": 20,
        "suffixes": (("汽车底盘系统", "Automotive Chassis Systems"),
                     ("精密制动", "Precision Braking"), ("机械", "Machinery")),
        "processes": ("forging", "machining", "stamping", "welding", "casting", "painting",
                      "assembly", "heat treatment"),
        "unit": "sets",
    },
    "intelligent-connected": {
        "weight": 20,
        "suffixes": (("智能科技", "Intelligent Technology"), ("汽车电子", "Automotive Electronics"),
                     ("微电子", "Microelectronics")),
        "processes": ("SMT", "wafer packaging", "PCBA test", "firmware flashing",
                      "optical calibration", "conformal coating", "burn-in"),
        "unit": "pcs",
    },
    "body": {
        "weight": 25,
        "suffixes": (("汽车部件", "Auto Parts"), ("精密压铸", "Precision Die-casting"),
                     ("汽车内饰", "Automotive Interiors")),
        "processes": ("stamping", "injection moulding", "die casting", "welding", "painting",
                      "sewing", "foaming", "harness assembly"),
        "unit": "pcs",
    },
    "industrial-software": {
        "weight": 4,
        "suffixes": (("工业软件", "Industrial Software"), ("数字科技", "Digital Technology")),
        "processes": ("software development", "system integration", "simulation"),
        "unit": None,
    },
    "warehousing-logistics": {
        "weight": 6,
        "suffixes": (("供应链管理", "Supply Chain Management"), ("物流", "Logistics")),
        "processes": ("warehousing", "JIT delivery", "milk run", "sequencing"),
        "unit": "pallets",
    },
}  # fmt: skip
ROADS = ("工业大道", "科技路", "创业路", "兴业路", "环城路", "港城大道", "智造大道", "汽车城路")
ISSUERS = ("DNV", "TÜV SÜD", "TÜV Rheinland", "SGS", "Bureau Veritas", "中国质量认证中心 (CQC)")
SELF_DECLARED = "self-declared by the manufacturer"
EMPLOYEE_BANDS_BY_TIER = {
    1: ("1000-4999", "5000+", "300-999"),
    2: ("300-999", "1000-4999", "20-299"),
    3: ("20-299", "1-19", "300-999"),
}
REVENUE_BANDS_BY_TIER = {
    1: ("400m-2b", "2b+", "20m-400m"),
    2: ("20m-400m", "400m-2b", "3m-20m"),
    3: ("3m-20m", "0-3m", "20m-400m"),
}


def demo_uscc(division: str, serial: int) -> str:
    """A checksum-valid USCC that cannot be a real company's (see the module docstring)."""
    digits = []
    for _ in range(6):
        serial, rest = divmod(serial, len(uscc.ALPHABET))
        digits.append(uscc.ALPHABET[rest])
    if serial:
        raise ValueError("demo serial out of range")
    return uscc.complete(f"91{division}DM{''.join(reversed(digits))}Y")


def is_demo_uscc(code: str) -> bool:
    return len(code) == 18 and code[:2] == "91" and code[8:10] == "DM" and code[16] == "Y"
