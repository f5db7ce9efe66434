"""atheris campaign on the h5 reader: python fuzz/fuzz_h5.py fuzz/corpus/h5 [-max_total_time=3600 ...]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from targets import main_atheris  # noqa: E402

if __name__ == "__main__":
    main_atheris("h5")
