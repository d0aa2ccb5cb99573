// The demo origin: the site Stellwerk fronts in the demo and the end-to-end tests.
//
//   node demo/origin/server.mjs [--port 8080] [--host 127.0.0.1]
//
// Routes: / (landing page, text/html; charset=utf-8), /logo.svg, /api/data.json,
// /api/echo (the request as the origin saw it, as JSON), /slow (a page whose second half
// arrives SLOW_MS later, to show that the edge streams).
import http from 'node:http';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { renderLandingPage, LOGO_SVG } from './make-page.mjs';

/** How long /slow holds back the second half of its page. */
export const SLOW_MS = 1500;

const PAGE = Buffer.from(renderLandingPage(), 'utf8');
const LOGO = Buffer.from(LOGO_SVG, 'utf8');
const DATA = Buffer.from(`${JSON.stringify({ products: 96, currency: 'EUR', updated: '2026-04-01T00:00:00Z' })}\n`);
const etag = (bytes) => `"${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}"`;

function send(res, status, headers, body) {
  res.writeHead(status, { 'Content-Length': body.length, ...headers });
  res.end(body);
}

function handle(req, res) {
  const url = new URL(req.url, 'http://origin.invalid');
  switch (url.pathname) {
    case '/':
    case '/index.html': {
      const tag = etag(PAGE);
      if (req.headers['if-none-match'] === tag) {
        res.writeHead(304, { ETag: tag });
        return res.end();
      }
      return send(res, 200, {
        'Content-Type': 'text/html; charset=utf-8',
        'Cache-Control': 'public, max-age=60',
        ETag: tag,
        Vary: 'Accept-Encoding',
        'X-Origin': 'stellwerk-demo',
        'Set-Cookie': 'session=demo; Path=/; HttpOnly',
      }, req.method === 'HEAD' ? Buffer.alloc(0) : PAGE);
    }
    case '/logo.svg':
      return send(res, 200, { 'Content-Type': 'image/svg+xml', 'Cache-Control': 'public, max-age=86400' }, LOGO);
    case '/api/data.json':
      return send(res, 200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, DATA);
    case '/api/echo': {
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.from(JSON.stringify({
          method: req.method,
          path: url.pathname,
          query: url.search,
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }));
        send(res, 200, { 'Content-Type': 'application/json' }, body);
      });
      return undefined;
    }
    case '/slow': {
      const half = Math.floor(PAGE.length / 2);
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.write(PAGE.subarray(0, half));
      const timer = setTimeout(() => res.end(PAGE.subarray(half)), SLOW_MS);
      res.on('close', () => clearTimeout(timer));
      return undefined;
    }
    case '/moved':
      res.writeHead(302, { Location: '/' });
      return res.end();
    default:
      return send(res, 404, { 'Content-Type': 'text/html; charset=utf-8' }, Buffer.from('<!doctype html><h1>Not found</h1>\n'));
  }
}

/** Starts the origin; resolves to its URL and a `close()`. Port 0 picks a free port. */
export function startOrigin({ port = 8080, host = '127.0.0.1' } = {}) {
  const server = http.createServer(handle);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const { port: bound } = server.address();
      resolve({
        url: `http://${host}:${bound}`,
        page: PAGE,
        logo: LOGO,
        data: DATA,
        close: () => new Promise((done) => { server.closeAllConnections(); server.close(() => done()); }),
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
  };
  const origin = await startOrigin({ port: Number(arg('--port', process.env.PORT ?? 8080)), host: arg('--host', '127.0.0.1') });
  console.log(`demo origin listening on ${origin.url}`);
  const stop = () => origin.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
