"""atheris campaign on the recipe_yaml reader: python fuzz/fuzz_recipe_yaml.py fuzz/corpus/recipe_yaml [-max_total_time=3600 ...]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from targets import main_atheris  # noqa: E402

if __name__ == "__main__":
    main_atheris("recipe_yaml")
