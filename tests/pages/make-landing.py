#!/usr/bin/env python3
"""Writes tests/pages/landing.html: a deterministic ~100 KB landing page of a made-up bicycle
shop, the page the rewrite tests and benchmark run on.

It has what personalised pages have: nav with a mega menu, a promo banner (#promo-banner),
a hero (<section id="hero" class="hero">) with an h1 and a call to action (a#cta.cta), a
product grid of 40 cards with inline styles, handlers and JSON-LD, inline CSS and JS, a
footer. Text is UTF-8 with a few non-ASCII characters (€, –, ü). Run:
    python3 tests/pages/make-landing.py      (prints the size)
"""
import json
import pathlib

# A linear congruential generator keeps the page identical on every run and machine.
state = 7_041_998


def rnd():
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
    return (state >> 33) / 2**31


def pick(items):
    return items[int(rnd() * len(items))]


MAKERS = ["Rahmenbau", "Kettenblatt", "Speiche", "Nabe", "Felge", "Sattel", "Lenker", "Pedal"]
PARTS = ["Gravel Frame", "Road Wheelset", "Commuter Light", "Saddle Bag", "Chain 11-speed",
         "Disc Rotor", "Bar Tape", "Clipless Pedal", "Mini Pump", "Tubeless Kit", "Helmet",
         "Rain Cape", "Bottle Cage", "Cassette 11–34", "Dynamo Hub", "Cargo Rack"]
FINISHES = ["graphite", "olive", "signal-red", "sand", "petrol", "chalk", "copper", "ink"]
BLURBS = [
    "Hand-built in Leipzig, trued twice and checked on the stand before it ships.",
    "Serviceable with ordinary tools; every spare part stays in stock for ten years.",
    "Ridden through two Alpine winters by our test crew before it reached the shop.",
    "Light where it can be, stout where it has to be, quiet on cobbles.",
    "Recycled aluminium, water-based paint, plastic-free packaging – no compromises.",
    "Fits most frames from 2012 on; the fit guide below tells you in two minutes.",
]

CSS = """
:root{--fg:#1b1f24;--muted:#5d6673;--accent:#c2410c;--accent-2:#ea580c;--paper:#faf9f7;--tile:#fff;--r:12px;--lift:0 1px 2px rgba(0,0,0,.06),0 2px 6px rgba(0,0,0,.08)}
*,*::before,*::after{box-sizing:border-box}body{margin:0;font:16px/1.55 ui-sans-serif,system-ui,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--paper)}
a{color:var(--accent)}a:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
.wrap{max-width:1240px;margin:0 auto;padding:0 20px}
.topbar{background:var(--fg);color:#e7e9ec;font-size:13px}.topbar .wrap{display:flex;justify-content:space-between;height:34px;align-items:center}
.masthead{background:#fff;border-bottom:1px solid #eceae6;position:sticky;top:0;z-index:20}
.masthead .wrap{display:flex;gap:28px;align-items:center;height:68px}
.brand{font-weight:800;font-size:22px;letter-spacing:-.01em;color:var(--fg);text-decoration:none}.brand b{color:var(--accent)}
.menu{display:flex;gap:18px;list-style:none;margin:0;padding:0}.menu>li{position:relative}.menu a{color:var(--muted);text-decoration:none;font-weight:500}
.menu .panel{display:none;position:absolute;top:36px;left:-20px;background:#fff;border-radius:var(--r);box-shadow:var(--lift);padding:16px 20px;min-width:260px}
.menu li:hover .panel{display:grid;grid-template-columns:1fr 1fr;gap:4px 24px}
.search{margin-left:auto;display:flex;gap:8px}.search input{border:1px solid #d9d6d0;border-radius:999px;padding:8px 14px;min-width:220px}
.button{display:inline-flex;align-items:center;gap:8px;padding:11px 20px;border-radius:999px;font-weight:650;text-decoration:none;border:1px solid transparent}
.button.solid{background:var(--accent);color:#fff}.button.solid:hover{background:var(--accent-2)}.button.line{border-color:#d9d6d0;color:var(--fg);background:#fff}
#promo-banner{background:#fff4e5;color:#8a3b00;text-align:center;padding:9px 14px;font-size:14px;border-bottom:1px solid #fde0b8}
.hero{padding:80px 0 64px;background:radial-gradient(circle at 80% 20%,#ffe8d6 0,#faf9f7 55%)}
.hero .wrap{display:grid;grid-template-columns:1.15fr .85fr;gap:56px;align-items:center}
.hero h1{font-size:54px;line-height:1.04;letter-spacing:-.035em;margin:0 0 18px}
.hero .intro{font-size:20px;color:var(--muted);margin:0 0 30px;max-width:32em}
.hero .cta{font-size:18px;padding:15px 28px}.hero .more{margin-left:10px}
.hero--highlight{background:radial-gradient(circle at 80% 20%,#dcfce7 0,#faf9f7 55%)}
.hero figure{margin:0;aspect-ratio:5/4;border-radius:28px;overflow:hidden;background:#f3d9c4;box-shadow:var(--lift)}
.proof{display:flex;gap:28px;flex-wrap:wrap;margin-top:26px;color:var(--muted);font-size:14px}
.heading{display:flex;justify-content:space-between;align-items:baseline;margin:60px 0 22px}.heading h2{font-size:30px;margin:0}
.tags{display:flex;gap:8px;flex-wrap:wrap;margin:0 0 20px;padding:0;list-style:none}.tags button{border:1px solid #e3e0da;background:#fff;border-radius:999px;padding:6px 13px;color:var(--muted)}
.tags button[aria-pressed=true]{background:var(--fg);color:#fff}
.grid{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:22px}
.tile{background:var(--tile);border-radius:var(--r);box-shadow:var(--lift);display:flex;flex-direction:column;overflow:hidden}
.tile .pic{position:relative;aspect-ratio:1;background:#efece7}.tile .pic img{width:100%;height:100%;object-fit:cover}
.flag{position:absolute;left:10px;top:10px;border-radius:999px;padding:2px 10px;font-size:12px;font-weight:700;background:#fff}
.flag.deal{background:#b91c1c;color:#fff}.flag.fresh{background:var(--accent);color:#fff}
.tile .txt{padding:14px 16px 18px;display:flex;flex-direction:column;gap:6px;flex:1}.tile h3{margin:0;font-size:16px}.tile p{margin:0;font-size:13px;color:var(--muted)}
.cost{margin-top:auto;display:flex;gap:8px;align-items:baseline}.cost .now{font-size:18px;font-weight:750}.cost s{color:#9aa1ab;font-size:14px}
.stars{color:#d97706;font-size:13px}.stars small{color:var(--muted)}
.finish{display:flex;gap:6px}.finish i{width:14px;height:14px;border-radius:50%;border:1px solid #d9d6d0;display:inline-block}
.facts{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;font-size:12px;color:var(--muted);margin:4px 0}.facts dt{font-weight:650;color:var(--fg)}.facts dd{margin:0}
.stories{display:grid;grid-template-columns:repeat(3,1fr);gap:26px}.stories article img{width:100%;border-radius:12px;background:#e8e4de}
.questions details{background:#fff;border-radius:12px;box-shadow:var(--lift);padding:14px 18px;margin:0 0 12px}.questions summary{font-weight:650;cursor:pointer}
.signup{margin:70px 0;padding:44px;border-radius:26px;background:var(--fg);color:#fff;display:flex;justify-content:space-between;gap:26px;align-items:center}
.signup input{border:0;border-radius:999px;padding:12px 16px;min-width:290px}
.foot{background:#14171c;color:#c9ced6;padding:60px 0 34px;font-size:14px}.foot .cols{display:grid;grid-template-columns:2fr repeat(4,1fr);gap:30px}
.foot h4{color:#fff;margin:0 0 12px;font-size:14px}.foot ul{list-style:none;margin:0;padding:0}.foot li{margin:6px 0}.foot a{color:#c9ced6;text-decoration:none}
.fine{border-top:1px solid #272c35;margin-top:42px;padding-top:20px;display:flex;justify-content:space-between}
@media (max-width:960px){.grid{grid-template-columns:repeat(2,minmax(0,1fr))}.hero .wrap{grid-template-columns:1fr}.hero h1{font-size:40px}.stories{grid-template-columns:1fr}.foot .cols{grid-template-columns:1fr 1fr}}
""".strip()

JS_HEAD = """
window.dataLayer=window.dataLayer||[];function track(){dataLayer.push(arguments)}
track('js',new Date());track('config','SHOP-0001',{anonymize_ip:true});
(function(){var t=document.documentElement;t.className=t.className.replace('no-js','js');
try{var c=localStorage.getItem('cart');if(c){window.__cart=JSON.parse(c)}}catch(e){window.__cart=[]}})();
""".strip()

JS_FOOT = """
(function(){
  var cart = window.__cart || [];
  function save(){ try { localStorage.setItem('cart', JSON.stringify(cart)); } catch (e) {} }
  function count(){ var n = 0; for (var i = 0; i < cart.length; i++) { n += cart[i].qty; } return n; }
  function render(){ var el = document.getElementById('cart-count'); if (el) { el.textContent = count(); } }
  window.addToCart = function(sku, price){
    for (var i = 0; i < cart.length; i++) { if (cart[i].sku === sku) { cart[i].qty++; save(); render(); return false; } }
    cart.push({sku: sku, price: price, qty: 1}); save(); render();
    track('event', 'add_to_cart', {sku: sku, value: price, currency: 'EUR'});
    return false;
  };
  document.querySelectorAll('.tags button').forEach(function(b){
    b.addEventListener('click', function(){
      var want = b.getAttribute('data-tag');
      document.querySelectorAll('.tags button').forEach(function(o){ o.setAttribute('aria-pressed', o === b); });
      document.querySelectorAll('.tile').forEach(function(t){
        t.hidden = want !== 'all' && (t.getAttribute('data-tags') || '').split(' ').indexOf(want) < 0;
      });
    });
  });
  if ('IntersectionObserver' in window) {
    var seen = new IntersectionObserver(function(entries){
      entries.forEach(function(e){ if (e.isIntersecting && e.intersectionRatio > 0.5) {
        track('event', 'view_item', {sku: e.target.getAttribute('data-sku')}); seen.unobserve(e.target); } });
    }, {threshold: [0.5]});
    document.querySelectorAll('.tile').forEach(function(t){ seen.observe(t); });
  }
  render();
})();
""".strip()


def menu():
    sections = {
        "Bikes": ["Gravel", "Road", "City", "Cargo", "Kids", "E-Bikes", "Frames", "Used"],
        "Parts": ["Drivetrain", "Wheels", "Brakes", "Cockpit", "Saddles", "Pedals"],
        "Gear": ["Helmets", "Lights", "Bags", "Locks", "Clothing", "Tools"],
        "Workshop": ["Book a service", "Bike fitting", "Wheel building", "Repair guides"],
    }
    out = ['<nav aria-label="Main"><ul class="menu">']
    for title, links in sections.items():
        slug = title.lower()
        out.append(f'<li><a href="/{slug}">{title}</a><div class="panel">')
        for link in links:
            href = "/" + slug + "/" + link.lower().replace(" ", "-")
            out.append(f'<a href="{href}">{link}</a>')
        out.append("</div></li>")
    out.append('<li><a href="/journal">Journal</a></li></ul></nav>')
    return "".join(out)


FRAMES = ["Gravel 2021–2026", "Road disc 2018–2026", "City 28 inch", "Cargo long-tail",
          "Touring 26 inch", "Steel classic (BSA)", "Kids 24 inch", "Track (Ø 100 mm)"]


def fit_notes(name):
    fits = "".join(
        f"<li>{pick(FRAMES)}: {pick(['fits', 'fits with adapter', 'fits, check clearance'])}</li>"
        for _ in range(8)
    )
    return (
        f'<details class="fit"><summary>Will the {name} fit my bike?</summary>'
        f"<ul>{fits}</ul><p>{pick(BLURBS)}</p></details>"
    )


def card(i):
    name = f"{pick(MAKERS)} {pick(PARTS)}"
    sku = f"VC-{1000 + i * 37}"
    price = 9 + int(rnd() * 900) + 0.95
    was = price + 10 + int(rnd() * 80) if rnd() < 0.3 else None
    flag = pick(["", "", "", '<span class="flag deal">Deal</span>', '<span class="flag fresh">New</span>'])
    finishes = [pick(FINISHES) for _ in range(1 + int(rnd() * 4))]
    stars = 3 + int(rnd() * 3)
    reviews = int(rnd() * 800)
    tags = " ".join(sorted({pick(["road", "gravel", "city", "cargo", "kids", "sale"]) for _ in range(2)}))
    hue = int(rnd() * 360)
    weight = 40 + int(rnd() * 2400)
    ld = {
        "@context": "https://schema.org", "@type": "Product", "name": name, "sku": sku,
        "offers": {"@type": "Offer", "price": f"{price:.2f}", "priceCurrency": "EUR",
                   "availability": "https://schema.org/InStock"},
        "aggregateRating": {"@type": "AggregateRating", "ratingValue": stars, "reviewCount": reviews},
    }
    swatches = "".join(
        f'<i title="{f}" style="background:hsl({(hue + k * 47) % 360} 35% 45%)"></i>'
        for k, f in enumerate(finishes)
    )
    was_html = f"<s>{was:.2f} €</s>" if was else ""
    return (
        f'<article class="tile" data-sku="{sku}" data-tags="{tags}" '
        f'style="--tile-hue:{hue};border-top:3px solid hsl({hue} 60% 50%)">'
        f'<a class="pic" href="/p/{sku.lower()}">{flag}'
        f'<img src="/img/p/{sku.lower()}-640.webp" srcset="/img/p/{sku.lower()}-320.webp 320w, '
        f'/img/p/{sku.lower()}-640.webp 640w, /img/p/{sku.lower()}-960.webp 960w" '
        f'sizes="(max-width: 960px) 50vw, 25vw" alt="{name} in {finishes[0]}" loading="lazy" '
        f'width="640" height="640"></a>'
        f'<div class="txt"><h3><a href="/p/{sku.lower()}">{name}</a></h3>'
        f"<p>{pick(BLURBS)}</p>"
        f'<div class="stars" aria-label="{stars} of 5 stars">{"★" * stars}{"☆" * (5 - stars)} '
        f"<small>({reviews})</small></div>"
        f'<div class="finish">{swatches}</div>'
        f'<dl class="facts"><dt>Weight</dt><dd>{weight} g</dd><dt>Finish</dt><dd>{finishes[0]}</dd>'
        f"<dt>Warranty</dt><dd>{pick([2, 5, 10])} years</dd><dt>Ships</dt><dd>{pick(['today', 'in 2 days', 'next week'])}</dd></dl>"
        f"{fit_notes(name)}"
        f'<div class="cost"><span class="now">{price:.2f} €</span>{was_html}</div>'
        f'<button class="button line add" type="button" '
        f"onclick=\"return addToCart('{sku}', {price:.2f})\">Add to cart</button></div>"
        f'<script type="application/ld+json">{json.dumps(ld, ensure_ascii=False)}</script>'
        f"</article>\n"
    )


def stories():
    titles = ["Across the Harz on 40 mm tyres", "How we true a wheel in eleven minutes",
              "The case for a dynamo hub", "Winter commuting without the misery",
              "Why we stopped gluing bar tape", "A cargo bike for a family of five"]
    out = ['<section class="wrap"><div class="heading"><h2>From the workshop journal</h2>'
           '<a href="/journal">All stories</a></div><div class="stories">']
    for n, title in enumerate(titles):
        out.append(
            f'<article><img src="/img/j/{n}.webp" alt="" width="400" height="260" loading="lazy">'
            f'<h3><a href="/journal/{n}">{title}</a></h3><p>{pick(BLURBS)} {pick(BLURBS)}</p>'
            f'<p class="meta">{3 + n} min read · by {pick(["Jana", "Ömer", "Lotte", "Kai"])}</p></article>'
        )
    out.append("</div></section>")
    return "".join(out)


def questions():
    pairs = [
        ("How long does shipping take?", "Most orders leave the workshop the same day and arrive within two working days in Germany, Austria and Switzerland."),
        ("Can I return a part I have fitted?", "Yes, within 30 days, as long as it still works as new. Wheels and frames are checked on the stand first."),
        ("Do you service bikes you did not sell?", "Every bike that rolls through the door gets the same service, whoever built it."),
        ("What does the ten-year parts promise mean?", "We keep spares for every component we sell for ten years after the last sale."),
        ("Do you ship outside the EU?", "We ship to the UK, Norway and Switzerland; duties are shown before you pay."),
        ("How do I pick a frame size?", "Measure your inseam and use the fit guide, or book a free fitting in the workshop."),
    ]
    out = ['<section class="wrap questions"><div class="heading"><h2>Questions</h2></div>']
    for q, a in pairs:
        out.append(f"<details><summary>{q}</summary><p>{a}</p></details>")
    out.append("</section>")
    return "".join(out)


def footer():
    cols = {
        "Shop": ["Bikes", "Parts", "Gear", "Gift cards", "Outlet"],
        "Workshop": ["Service", "Fitting", "Wheel building", "Guides"],
        "Company": ["About", "Jobs", "Press", "Sustainability report"],
        "Help": ["Shipping", "Returns", "Warranty", "Contact"],
    }
    out = ['<footer class="foot"><div class="wrap"><div class="cols"><div>'
           '<a class="brand" href="/" style="color:#fff">Velo <b>&amp;</b> Co</a>'
           "<p>Parts and bikes built to be repaired. Workshop in Leipzig since 2009.</p></div>"]
    for title, links in cols.items():
        out.append(f"<div><h4>{title}</h4><ul>")
        out.extend(f'<li><a href="/{title.lower()}/{l.lower().replace(" ", "-")}">{l}</a></li>' for l in links)
        out.append("</ul></div>")
    out.append('</div><div class="fine"><span>© 2026 Velo &amp; Co GmbH</span>'
               '<span><a href="/imprint">Imprint</a> · <a href="/privacy">Privacy</a> · '
               '<a href="/terms">Terms</a></span></div></div></footer>')
    return "".join(out)


def page():
    cards = "".join(card(i) for i in range(40))
    tag_buttons = "".join(
        f'<li><button type="button" data-tag="{t}" aria-pressed="{str(t == "all").lower()}">{t.title()}</button></li>'
        for t in ["all", "road", "gravel", "city", "cargo", "kids", "sale"]
    )
    return f"""<!DOCTYPE html>
<html lang="en" class="no-js">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Velo &amp; Co – bicycle parts built to be repaired</title>
<meta name="description" content="Frames, wheels and parts from a Leipzig workshop, with a ten-year spare-parts promise.">
<link rel="canonical" href="https://velo.example/">
<link rel="preload" href="/fonts/sans.woff2" as="font" type="font/woff2" crossorigin>
<style>{CSS}</style>
<script>{JS_HEAD}</script>
</head>
<body>
<div class="topbar"><div class="wrap"><span>Free shipping from 60 € · 30-day returns</span><span><a href="/stores" style="color:#e7e9ec">Workshop: Mo–Sa 9–19</a></span></div></div>
<header class="masthead"><div class="wrap"><a class="brand" href="/">Velo <b>&amp;</b> Co</a>
{menu()}
<form class="search" action="/search" role="search"><input type="search" name="q" placeholder="Search 4,000 parts" aria-label="Search"><button class="button line" type="submit">Search</button></form>
<a class="button line" href="/cart" aria-label="Cart">Cart <span id="cart-count">0</span></a></div></header>
<div id="promo-banner" class="promo" role="note">Spring service week: 20 % off every workshop booking until Sunday – <a href="/workshop">book now</a></div>
<main>
<section id="hero" class="hero"><div class="wrap"><div>
<h1>Parts that outlast the ride</h1>
<p class="intro">Frames, wheels and components from our Leipzig workshop – serviceable with ordinary tools, with spares stocked for ten years.</p>
<a id="cta" class="button solid cta" href="/shop" data-track="hero-cta">Shop the range</a><a class="button line more" href="/workshop">Visit the workshop</a>
<div class="proof"><span>★★★★★ 4.8 from 12,400 riders</span><span>Carbon-neutral shipping</span><span>Repairs for life</span></div>
</div><figure><img src="/img/hero-1200.webp" srcset="/img/hero-800.webp 800w, /img/hero-1200.webp 1200w, /img/hero-1800.webp 1800w" sizes="(max-width: 960px) 100vw, 45vw" alt="A mechanic truing a wheel" width="1200" height="960" fetchpriority="high"></figure></div></section>
<section class="wrap"><div class="heading"><h2>Best sellers this week</h2><a href="/shop?sort=popular">View all</a></div>
<ul class="tags">{tag_buttons}</ul>
<div class="grid">
{cards}</div></section>
{stories()}
{questions()}
<section class="wrap"><div class="signup"><div><h2>Workshop notes, once a month</h2><p>Repair guides, new parts, no spam.</p></div>
<form action="/newsletter" method="post"><input type="email" name="email" placeholder="you@example.com" required> <button class="button solid" type="submit">Subscribe</button></form></div></section>
</main>
{footer()}
<script>{JS_FOOT}</script>
</body>
</html>
"""


if __name__ == "__main__":
    here = pathlib.Path(__file__).resolve().parent
    html = page()
    (here / "landing.html").write_text(html, encoding="utf-8")
    print(f"landing.html: {len(html.encode('utf-8'))} bytes")
