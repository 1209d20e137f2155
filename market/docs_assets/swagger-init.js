// Starts Swagger UI on /docs. A file served by the app, not an inline script: the docs page's
// Content-Security-Policy allows scripts from the app's own origin only.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Never ask a third-party validator about the document (and no request leaves the app).
    validatorUrl: null,
    tryItOutEnabled: false,
    // The session cookie rides along on "Try it out"; writes also need X-CSRF-Token.
    withCredentials: true,
  });
})();
