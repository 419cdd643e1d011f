.PHONY: test bench

# Unit tests of every package.
test:
	go test ./...

# Benchmarks against peers (nginx, HAProxy, Flask, FastAPI); writes
# bench/RESULTS.md and bench/results.json. QUICK=1 for a short run.
bench:
	go run ./bench/cmd/ebbbench $(if $(QUICK),-quick) $(BENCHFLAGS)
