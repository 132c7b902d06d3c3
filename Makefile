.PHONY: install test lint bench quickstart

install:
	pip install torch==2.13.0 && pip install -e ".[dev,objectives]"

test:
	python -m pytest -q

lint:
	ruff check .

bench:
	python benchmarks/overhead.py
	python benchmarks/meter_overhead.py
	python benchmarks/throughput.py

quickstart:
	greentune run examples/quickstart.yaml
