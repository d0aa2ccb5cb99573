// Baseline for bench/edge.mjs: fetch the same path from ORIGIN_URL and return the origin's
// response unchanged (status, headers and the body stream as they come).
export default {
  async fetch(request, env) {
    const incoming = new URL(request.url);
    const target = new URL(incoming.pathname + incoming.search, env.ORIGIN_URL);
    return fetch(target, { method: request.method, headers: request.headers, body: request.body });
  },
};
