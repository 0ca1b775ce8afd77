"""Keel's one version: the wheel's metadata, ``keel --version`` and every run record.

A release is tagged ``v`` + this string; the release workflow refuses a tag that differs
(``.github/workflows/release.yml``) and CHANGELOG.md holds a section for it.
"""

__version__ = "0.1.0"
