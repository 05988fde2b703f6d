#!/usr/bin/env python3
"""Prints the tables of src/tokenizer/unicode8.c from tests/fixtures/tokenizers/unicode_classes.json.

    python3 tests/reference/unicode_tables.py [tests/fixtures/tokenizers/unicode_classes.json]

unicode_classes.json is what tokenizer_fixtures.py records by asking `tokenizers` about every code
point; the tables are those answers as sorted [lo, hi] ranges, and the lowercase map as the runs
[lo, hi, step, delta] the file records (U+0130, the one code point lowered to two, is written by hand). test_tokenizer.c checks the C side
against the same file on every code point, so paste the output over the tables when tokenizers'
answers change. (BertNormalizer's clean_text is written out by hand in unicode8.c: Cc, Co and the
Unicode 8.0 Cf list.) Needs only the standard library.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def table(name, ranges, per_line=5):
    items = ["{0x%04X, 0x%04X}" % (a, b) for a, b in ranges]
    lines = ["    " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line)]
    return "static const uint32_t %s[][2] = {\n%s\n};" % (name, "\n".join(lines))


def runs_table(name, runs, per_line=4):
    items = ["{0x%04X, 0x%04X, %d, %d}" % tuple(r) for r in runs]
    lines = ["    " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line)]
    return "static const struct lower_run %s[] = {\n%s\n};" % (name, "\n".join(lines))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "tokenizers", "unicode_classes.json")
    with open(path) as f:
        doc = json.load(f)
    classes = doc["classes"]
    print(table("PUNCTUATION", classes["bert_punctuation"]))
    print()
    print(table("NONSPACING_MARKS", classes["bert_strip_accents_removes"]))
    print()
    print(table("COMBINING_MARKS", classes["strip_accents_removes"]))
    print()
    print(runs_table("LOWERCASE", doc["lowercase"]["runs"]))
    print("/* multi: %s */" % json.dumps(doc["lowercase"]["multi"]))


if __name__ == "__main__":
    main()
