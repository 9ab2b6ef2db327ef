"""`.ecdc` files: the official container, codes bit-packed or range-coded with the entropy
model (`encodec_train.model.lm`), and the compress / decompress commands.

`container` (header, bit packing, errors) → `probabilities` (the model's logits as integer
weights that every machine computes alike) → `range_coding` (constriction's range coder
driven by them) → `ecdc` (codes of a whole file in and out) → `models` (loading the codec and
the entropy model) → `cli` (the commands).
"""
