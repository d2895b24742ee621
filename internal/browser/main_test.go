package browser_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine of the harness and of chromedp ends with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
