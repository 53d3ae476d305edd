"""yaml: every document of every file parses."""

import os
import tempfile
import unittest

from pulse_deploy_check.yamlfiles import check_yaml, load_text

from . import fixtures


class YamlTest(unittest.TestCase):
    def test_documents_load_and_empty_ones_are_dropped(self):
        self.assertEqual(load_text("a: 1\n---\n---\nb: 2\n"), [{"a": 1}, {"b": 2}])

    def test_a_file_that_does_not_parse_fails(self):
        with tempfile.TemporaryDirectory() as d:
            good, bad = os.path.join(d, "good.yml"), os.path.join(d, "bad.yml")
            with open(good, "w", encoding="utf-8") as f:
                f.write("a: 1\n")
            with open(bad, "w", encoding="utf-8") as f:
                f.write("a: [1\n")
            ctx = fixtures.context()
            check_yaml(ctx, [good])
            self.assertEqual((ctx.report.errors, ctx.docs_by_file[good]), ([], [{"a": 1}]))
            check_yaml(ctx, [bad])
            self.assertEqual(len(ctx.report.errors), 1)
            self.assertTrue(ctx.report.errors[0].startswith(f"yaml: {bad} does not parse"))


if __name__ == "__main__":
    unittest.main()
