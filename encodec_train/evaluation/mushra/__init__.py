"""MUSHRA listening tests as the paper runs them (§4.2): a webMUSHRA kit with a hidden
reference and a 3.5 kHz low-passed anchor (`build.py`), and the analysis of its results with
the paper's annotator filtering (`analyze.py`)."""

REFERENCE = "reference"
"""webMUSHRA's name for the hidden reference in its results."""
ANCHOR = "anchor35"
"""Our name for the low anchor: the reference low-passed at 3.5 kHz."""
