// The demo landing page, generated deterministically (same bytes on every machine and run).
// `node demo/origin/make-page.mjs > page.html` writes it out; server.mjs renders it in memory.
import { fileURLToPath } from 'node:url';

const PRODUCTS = [
  ['Trail Runner 2', 'Lightweight shoe for rocky paths', 129],
  ['Summit Shell', 'Waterproof three-layer jacket', 249],
  ['Basecamp Tent', 'Two-person tent, 1.9 kg', 389],
  ['Ridge Pack 30', 'Day pack with hip belt', 119],
  ['Alpine Gloves', 'Insulated, touchscreen tips', 59],
  ['Glacier Bottle', 'Double-wall steel, 750 ml', 34],
  ['Scree Gaiters', 'Keeps stones out of your shoes', 45],
  ['Headlamp 400', '400 lumen, USB-C', 49],
  ['Merino Tee', '150 g/m², odour resistant', 69],
  ['Down Vest', '800-fill, packs into its pocket', 159],
  ['Trekking Poles', 'Carbon, three sections', 139],
  ['Camp Stove', 'Canister stove, 2.6 kW', 79],
];

/** A small deterministic pseudo-random sequence (mulberry32), so ratings look varied. */
function sequence(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function card(index, [name, blurb, price], next) {
  const rating = (3.5 + next() * 1.5).toFixed(1);
  const reviews = Math.floor(next() * 900) + 12;
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  return `      <article class="product-card" data-product-id="p${index + 1}" data-price="${price}">
        <a class="product-link" href="/products/${slug}">
          <img class="product-image" src="/images/${slug}.jpg" alt="${name}" width="320" height="240" loading="lazy">
          <h3 class="product-name">${name}</h3>
        </a>
        <p class="product-blurb">${blurb}. Tested on the ridge between two huts, in rain, wind and sun.</p>
        <p class="product-rating" aria-label="rated ${rating} of 5">★ ${rating} <span class="reviews">(${reviews} reviews)</span></p>
        <p class="product-price"><span class="currency">€</span>${price}.00</p>
        <button class="add-to-cart" type="button" data-sku="SKU-${String(index + 1).padStart(4, '0')}">Add to cart</button>
      </article>`;
}

/** The landing page: a hero with an h1 and the #cta button, then a grid of product cards. */
export function renderLandingPage({ rounds = 8 } = {}) {
  const next = sequence(20240611);
  const cards = [];
  for (let round = 0; round < rounds; round += 1) {
    PRODUCTS.forEach((product, i) => cards.push(card(round * PRODUCTS.length + i, product, next)));
  }
  const faq = Array.from({ length: 8 }, (_, i) => `      <details class="faq-item">
        <summary>Question ${i + 1}: how long does delivery take to the Alps?</summary>
        <p>Orders placed before noon leave our warehouse the same day. Mountain huts receive parcels with the next supply run; we will tell you when.</p>
      </details>`).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Gipfelgut — gear for the long way up</title>
  <meta name="description" content="Outdoor gear, tested on the mountain.">
  <link rel="icon" href="/logo.svg" type="image/svg+xml">
  <style>
    :root { --ink: #1d2b36; --accent: #d9480f; --paper: #fbfaf7; }
    body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--ink); background: var(--paper); }
    header.site-header { display: flex; align-items: center; gap: 1rem; padding: 1rem 2rem; }
    .hero { padding: 4rem 2rem; background: linear-gradient(135deg, #e9ecef, #fff4e6); }
    .hero h1 { font-size: 3rem; margin: 0 0 1rem; }
    #cta { background: var(--accent); color: #fff; border: 0; padding: .9rem 1.6rem; font-size: 1.1rem; border-radius: .4rem; }
    .product-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 1.5rem; padding: 2rem; }
    .product-card { background: #fff; border-radius: .5rem; padding: 1rem; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
    .product-price { font-weight: 700; }
    footer { padding: 2rem; font-size: .9rem; color: #555; }
  </style>
</head>
<body>
  <header class="site-header">
    <a href="/"><img src="/logo.svg" alt="Gipfelgut" width="140" height="32"></a>
    <nav class="main-nav"><a href="/shoes">Shoes</a> <a href="/jackets">Jackets</a> <a href="/camping">Camping</a> <a href="/sale">Sale</a></nav>
  </header>
  <main>
    <section class="hero" id="hero">
      <h1>Gear for the long way up</h1>
      <p class="hero-subtitle">Tested on the mountain before it reaches your door. Free returns for 60 days.</p>
      <a id="cta" class="button primary" href="/shop">Shop the collection</a>
    </section>
    <section class="usp" aria-label="why us">
      <ul>
        <li>Free shipping over €50</li>
        <li>Repairs for life</li>
        <li>Climate-neutral delivery</li>
      </ul>
    </section>
    <section class="product-grid" aria-label="products">
${cards.join('\n')}
    </section>
    <section class="faq" aria-label="questions">
${faq}
    </section>
  </main>
  <footer>
    <p>© Gipfelgut GmbH · Imprint · Privacy · Terms</p>
  </footer>
  <script>
    document.querySelectorAll('.add-to-cart').forEach((button) => {
      button.addEventListener('click', () => { button.textContent = 'Added'; });
    });
  </script>
</body>
</html>
`;
}

/** The site's logo, for checking that non-HTML bodies pass through untouched. */
export const LOGO_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="140" height="32" viewBox="0 0 140 32">
  <title>Gipfelgut</title>
  <path class="hero" d="M2 30 L14 6 L22 20 L28 12 L40 30 Z" fill="#1d2b36"/>
  <text x="46" y="23" font-family="system-ui, sans-serif" font-size="18" fill="#d9480f">Gipfelgut</text>
</svg>
`;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(renderLandingPage());
}
