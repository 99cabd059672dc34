"""dohost's benchmarks: the suite (`python -m bench`, bench/suite.py) and standalone scripts."""
