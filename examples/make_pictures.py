"""Draw the bundled dish pictures from dishes.json.

Each picture is a plate on a table with the dish's food emoji on it, rendered from Debian's
Noto Color Emoji font (Apache 2.0 / OFL, see LICENSE.md). Several variants per dish (position,
size, angle, lighting) give the sample dataset more than one picture of each dish, so a
held-out split by picture or by dish has something to hold out.

    apt-get install fonts-noto-color-emoji
    python examples/make_pictures.py          # rewrites examples/images/*.jpg

The pictures are committed; this script documents how they were made and makes them again.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
SIZE = 256
VARIANTS = 3
# Noto Color Emoji is a bitmap font: it only renders at its native strike of 109 px.
EMOJI_STRIKE = 109


def load_emoji_font() -> ImageFont.FreeTypeFont:
    return ImageFont.truetype("NotoColorEmoji.ttf", EMOJI_STRIKE)


def render_emoji(font: ImageFont.FreeTypeFont, emoji: str, size: int) -> Image.Image:
    glyph = Image.new("RGBA", (EMOJI_STRIKE + 28, EMOJI_STRIKE + 28), (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text((0, 0), emoji, font=font, embedded_color=True)
    glyph = glyph.crop(glyph.getbbox())
    return glyph.resize((size, size), Image.LANCZOS)


def draw_dish(dish: dict, variant: int, font: ImageFont.FreeTypeFont) -> Image.Image:
    rng = random.Random(f"{dish['id']}-{variant}")
    picture = Image.new("RGB", (SIZE, SIZE), dish["table"])
    draw = ImageDraw.Draw(picture)
    # wood-grain-like stripes so the table is not a flat colour
    for y in range(0, SIZE, rng.randint(9, 15)):
        shade = rng.randint(-18, 18)
        r, g, b = Image.new("RGB", (1, 1), dish["table"]).getpixel((0, 0))
        draw.line([(0, y), (SIZE, y + rng.randint(-6, 6))],
                  fill=(max(0, r + shade), max(0, g + shade), max(0, b + shade)), width=2)

    margin = rng.randint(14, 30)
    draw.ellipse([margin + 6, margin + 10, SIZE - margin + 6, SIZE - margin + 10], fill="#00000055")
    draw.ellipse([margin, margin, SIZE - margin, SIZE - margin], fill=dish["plate"], outline="#cccccc", width=3)

    emoji = dish["emoji"]
    main_size = rng.randint(110, 140) if len(emoji) == 1 else rng.randint(85, 105)
    centre = SIZE // 2 + rng.randint(-10, 10)
    for index, symbol in enumerate(emoji):
        size = main_size if index == 0 else int(main_size * 0.6)
        glyph = render_emoji(font, symbol, size).rotate(rng.uniform(-25, 25), expand=True, resample=Image.BICUBIC)
        if index == 0:
            x, y = centre - glyph.width // 2, centre - glyph.height // 2
        else:
            x = rng.randint(margin + 8, SIZE - margin - glyph.width - 8)
            y = rng.randint(margin + 8, SIZE - margin - glyph.height - 8)
        picture.paste(glyph, (x, y), glyph)

    picture = ImageEnhance.Brightness(picture).enhance(rng.uniform(0.85, 1.15))
    return picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.6)))


def main() -> None:
    dishes = json.loads((HERE / "dishes.json").read_text(encoding="utf-8"))
    out = HERE / "images"
    out.mkdir(exist_ok=True)
    font = load_emoji_font()
    for dish in dishes:
        for variant in range(VARIANTS):
            draw_dish(dish, variant, font).save(out / f"{dish['id']}-{variant}.jpg", quality=88)
    print(f"wrote {len(dishes) * VARIANTS} pictures to {out}")


if __name__ == "__main__":
    main()
