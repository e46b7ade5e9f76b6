package sim

import (
	"net/http"
	"strings"
)

// peopleCondition is one `op = "value"` term of a /people filter.
type peopleCondition struct {
	op    string // lower-cased operator
	value string // lower-cased value
}

// peopleFilter turns the q parameter of GET /people into a name matcher.
// Empty q matches everyone. A q with a double quote uses the Academy filter
// syntax, terms joined by AND, e.g.
//
//	contains = "Rob" AND endsWith = "Jr."
//
// with the operators contains, startsWith, endsWith and equal (also equals).
// Any other q is a plain substring. Matching ignores case. A malformed
// filter is a 400.
func peopleFilter(q string) (func(name string) bool, error) {
	q = strings.TrimSpace(q)
	if q == "" {
		return func(string) bool { return true }, nil
	}
	if !strings.Contains(q, `"`) {
		sub := strings.ToLower(q)
		return func(name string) bool { return strings.Contains(strings.ToLower(name), sub) }, nil
	}
	conds, ok := parsePeopleQuery(q)
	if !ok {
		return nil, errorf(http.StatusBadRequest, `Invalid q: use terms like contains = "Rob" joined by AND.`)
	}
	return func(name string) bool {
		name = strings.ToLower(name)
		for _, c := range conds {
			var hit bool
			switch c.op {
			case "contains":
				hit = strings.Contains(name, c.value)
			case "startswith":
				hit = strings.HasPrefix(name, c.value)
			case "endswith":
				hit = strings.HasSuffix(name, c.value)
			default: // equal, equals
				hit = name == c.value
			}
			if !hit {
				return false
			}
		}
		return true
	}, nil
}

// parsePeopleQuery parses `op = "value" [AND op = "value"]…`. Values cannot
// contain a double quote.
func parsePeopleQuery(q string) ([]peopleCondition, bool) {
	var conds []peopleCondition
	rest := q
	for {
		rest = strings.TrimLeft(rest, " \t")
		op, after, ok := strings.Cut(rest, "=")
		if !ok {
			return nil, false
		}
		op = strings.ToLower(strings.TrimSpace(op))
		switch op {
		case "contains", "startswith", "endswith", "equal", "equals":
		default:
			return nil, false
		}
		after = strings.TrimLeft(after, " \t")
		if !strings.HasPrefix(after, `"`) {
			return nil, false
		}
		value, tail, ok := strings.Cut(after[1:], `"`)
		if !ok {
			return nil, false
		}
		conds = append(conds, peopleCondition{op: op, value: strings.ToLower(value)})
		tail = strings.TrimLeft(tail, " \t")
		if tail == "" {
			return conds, true
		}
		i := strings.IndexAny(tail, " \t")
		if i < 0 || !strings.EqualFold(tail[:i], "AND") {
			return nil, false
		}
		rest = tail[i:]
	}
}
