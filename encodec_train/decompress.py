"""`python -m encodec_train.decompress in.ecdc out.wav [--checkpoint CODEC] [--lm MODEL]`:
see `encodec_train.compression.cli`."""

from encodec_train.compression.cli import decompress_main

if __name__ == "__main__":
    decompress_main()
