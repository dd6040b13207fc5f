.PHONY: test bench bench-quick
test:
	python -m pytest
bench:
	python bench/bench.py --json bench/latest.json
bench-quick:
	python bench/bench.py --hours 2
