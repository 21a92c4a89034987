// The API reference page (/api/docs): Swagger UI over the node's own
// OpenAPI document. Requests made with "Try it out" carry the dashboard
// session's CSRF token, so they work with --http-auth after a login.
'use strict';
window.addEventListener('DOMContentLoaded', async () => {
  const root = document.getElementById('swagger-ui');
  let csrf = null;
  try {
    const s = await fetch('/api/session', { headers: { Accept: 'application/json' } });
    if (s.ok) csrf = (await s.json()).csrf_token || null;
  } catch { /* without a session the page still reads */ }
  window.SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    deepLinking: true,
    tryItOutEnabled: false,
    requestInterceptor: (req) => {
      if (csrf && req.method && req.method !== 'GET') req.headers['X-CSRF-Token'] = csrf;
      return req;
    },
  });
});
