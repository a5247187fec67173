"""The pictures of the dashboards, drawn from tensors with PIL: a confusion matrix, misclassified
images."""

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

Misclassified = tuple[torch.Tensor, int, int, float]  # image [H, W], true label, predicted, probability


CELL = 36  # pixels a side of a confusion-matrix cell
FONT_SIZE = 12


def as_tensor(image: Image.Image) -> torch.Tensor:
    """A drawn RGB image as TensorBoard's add_image takes it: uint8 [3, H, W]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def confusion_image(counts: torch.Tensor, title: str) -> torch.Tensor:
    """The confusion matrix as an RGB image [3, H, W] (uint8) for both views: each cell coloured by
    its share of the true class's row (the row-normalised matrix) and labelled with its count;
    empty cells stay blank. Drawn with PIL rather than matplotlib, whose text layout is slow enough
    to weigh on every validation epoch (docs/benchmarks.md)."""
    counts = counts.cpu()
    classes = len(counts)
    shares = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    colours = (colormaps["Blues"](shares.numpy())[..., :3] * 255).round().astype("uint8").tolist()
    count_of, share_of = counts.tolist(), shares.tolist()  # read cell by cell: Python numbers, not tensors
    font = ImageFont.load_default(size=FONT_SIZE)
    left, top = 46, 28  # room for the class axis and the title
    side = classes * CELL
    image = Image.new("RGB", (left + side + 8, top + side + 40), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left + side / 2, 14), title, fill="black", font=font, anchor="mm")
    for true in range(classes):
        for predicted in range(classes):
            x, y = left + predicted * CELL, top + true * CELL
            draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), fill=tuple(colours[true][predicted]))
            if count_of[true][predicted]:
                colour = "white" if share_of[true][predicted] > 0.5 else "black"
                draw.text((x + CELL / 2, y + CELL / 2), str(count_of[true][predicted]), colour, font, "mm")
    for index in range(classes):
        middle = index * CELL + CELL / 2
        draw.text((left + middle, top + side + 10), str(index), fill="black", font=font, anchor="mm")
        draw.text((left - 10, top + middle), str(index), fill="black", font=font, anchor="mm")
    draw.text((left + side / 2, top + side + 28), "predicted class", fill="black", font=font, anchor="mm")
    axis_label = Image.new("RGB", (side, 16), "white")
    ImageDraw.Draw(axis_label).text((side / 2, 8), "true class", fill="black", font=font, anchor="mm")
    image.paste(axis_label.rotate(90, expand=True), (4, top))
    return as_tensor(image)


def misclassified_image(found: list[Misclassified], columns: int = 8) -> torch.Tensor:
    """A grid of the digits, each captioned true -> predicted (probability) and shown with its own
    grey scale, as an RGB image [3, H, W] (uint8). Drawn with PIL, like the confusion matrix."""
    font = ImageFont.load_default(size=FONT_SIZE)
    side = 2 * found[0][0].shape[-1]  # each digit at twice its size
    cell_width, cell_height, top = side + 40, side + 22, 28
    rows = -(-len(found) // columns)
    image = Image.new("RGB", (columns * cell_width, top + rows * cell_height), "white")
    draw = ImageDraw.Draw(image)
    title = "misclassified test digits: true -> predicted (probability)"
    draw.text((image.width / 2, 14), title, fill="black", font=font, anchor="mm")
    for index, (digit, label, prediction, probability) in enumerate(found):
        x = (index % columns) * cell_width
        y = top + (index // columns) * cell_height
        grey = (digit - digit.min()) / (digit.max() - digit.min()).clamp(min=1e-6) * 255
        picture = Image.fromarray(grey.round().to(torch.uint8).numpy()).resize((side, side), Image.NEAREST)
        image.paste(picture.convert("RGB"), (x + (cell_width - side) // 2, y + 16))
        caption = f"{label} -> {prediction} ({probability:.2f})"
        draw.text((x + cell_width / 2, y + 7), caption, fill="black", font=font, anchor="mm")
    return as_tensor(image)
