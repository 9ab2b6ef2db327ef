"""encodec-train: train EnCodec neural audio codecs as the paper describes."""
