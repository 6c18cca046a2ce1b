"""Browser tests of the built book (a package so its test modules may share names with tests/)."""
