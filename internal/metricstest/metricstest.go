// Package metricstest helps tests that inspect the gateway's Prometheus collectors.
package metricstest

import (
	"reflect"
	"testing"

	"github.com/academy-gateway/academy-gateway/metrics"
)

// TouchVectors creates one child of every vector in m, whatever its type and label count, so
// that every vector shows up in a gather; a field added to metrics.Metrics later is covered
// without changing the tests that call it.
func TouchVectors(tb testing.TB, m *metrics.Metrics) {
	tb.Helper()
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		get := v.Field(i).MethodByName("GetMetricWithLabelValues")
		if !get.IsValid() {
			continue // a plain collector: gathered as it is
		}
		touched := false
		for n := 0; n <= 10 && !touched; n++ {
			args := make([]reflect.Value, n)
			for j := range args {
				args[j] = reflect.ValueOf("x")
			}
			touched = get.Call(args)[1].IsNil() // nil error: n is the vector's label count
		}
		if !touched {
			tb.Fatalf("metrics.Metrics.%s: no label count up to 10 creates a child", v.Type().Field(i).Name)
		}
	}
}
