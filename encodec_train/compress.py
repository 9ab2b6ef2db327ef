"""`python -m encodec_train.compress in.wav out.ecdc --checkpoint CODEC [--bandwidth 6]
[--lm ENTROPY_MODEL]`: see `encodec_train.compression.cli`."""

from encodec_train.compression.cli import compress_main

if __name__ == "__main__":
    compress_main()
