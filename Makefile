# The two commands a newcomer needs:
#   make demo   the whole job end to end, offline: research -> generation -> judging -> report
#   make test   lint (ruff), type-check (mypy), then run the test suite
# Both install what they need into .venv first (pip upgraded, versions pinned by constraints.txt).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := local,generate,serve,train,test

.PHONY: install browser test demo bench clean

install: $(STAMP)

# The viewer's browser tests drive Debian's headless Chromium and its driver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -q && apt-get install -y -q chromium chromium-driver; }

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

test: install browser
	$(PY) -m ruff check src tests
	$(PY) -m mypy src
	$(PY) -m pytest -q

demo: install
	$(PY) examples/demo/run_demo.py

bench: install
	$(PY) benchmarks/agent_overhead.py
	$(PY) benchmarks/image_search.py
	$(PY) benchmarks/browse_extraction.py
	$(PY) benchmarks/replay_batch.py
	$(PY) benchmarks/generator_server.py
	$(PY) benchmarks/judge_throughput.py
	$(PY) benchmarks/viewer.py
	$(PY) benchmarks/sft_throughput.py
	$(PY) benchmarks/sft_import.py
	$(PY) benchmarks/grpo_rollouts.py
	@echo "benchmarks/gpu_generate.py, gpu_sft.py and gpu_grpo.py need a GPU: run them there (--tiny checks them on CPU;"
	@echo "  benchmarks/gpu_grpo.sh fetches the wheels a bare GPU machine lacks and runs it there)"

clean:
	rm -rf $(VENV) outputs .pytest_cache .mypy_cache .ruff_cache
