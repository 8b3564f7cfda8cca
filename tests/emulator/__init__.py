"""Tests of the provider emulator (a package, so its module names never clash with other suites)."""
