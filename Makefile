# streamfleet — common tasks. `make dev` runs the embedded default; `make test` runs every test.

GO ?= go

.PHONY: build dev test test-deps vet fmt bench fuzz clean

build:
	$(GO) build -o bin/streamfleet ./cmd/streamfleet

dev:
	$(GO) run ./cmd/streamfleet dev

test-deps:
	./scripts/install-test-deps.sh

# The whole suite, as CI runs it: formatting, vet, then every test under the race detector.
test: test-deps
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./node/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzOffer -fuzztime 60s ./node/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/streamname/
	$(GO) test -run '^$$' -fuzz FuzzTarget -fuzztime 30s ./node/rtspserver/
	$(GO) test -run '^$$' -fuzz FuzzParseLayerMID -fuzztime 30s ./node/rtspserver/
	$(GO) test -run '^$$' -fuzz FuzzPlanPull -fuzztime 60s ./node/cascade/
	$(GO) test -run '^$$' -fuzz FuzzParseStreamID -fuzztime 30s ./node/srtserver/
	$(GO) test -run '^$$' -fuzz FuzzVerify -fuzztime 30s ./internal/token/
	$(GO) test -run '^$$' -fuzz FuzzMintJSON -fuzztime 30s ./internal/token/
	$(GO) test -run '^$$' -fuzz FuzzIngest -fuzztime 60s ./node/mpegts/
	$(GO) test -run '^$$' -fuzz FuzzLookupRequest -fuzztime 30s ./streammanager/
	$(GO) test -run '^$$' -fuzz FuzzDrainBody -fuzztime 30s ./streammanager/

clean:
	rm -rf bin
