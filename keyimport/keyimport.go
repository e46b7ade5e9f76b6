// Package keyimport is the one import engine of docs/reference.md §2.1, behind both `academy-gateway keys
// import` and POST /admin/keys/import: it reads a CSV file (header row user,key,scopes,name),
// JSON Lines, or a {"keys":[…]} document, checks every line on its own, hands the good ones to
// the token store in one pipelined call, and sums the outcomes up in the admin API's shape.
//
// A key never leaves this package in any form but its id: reasons name the column that is
// wrong, never the text in it (a key pasted into the wrong column must not be echoed either).
package keyimport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/scope"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// Format is the syntax of an import file.
type Format int

// Formats.
const (
	// CSV has the header row user,key,scopes,name (any order); scopes are separated by spaces.
	CSV Format = iota
	// JSONLines holds one {"user","key","scopes","name"} object per line; scopes is an array.
	JSONLines
	// Document is one {"keys":[…]} object of such objects; a "line" is an element's position.
	Document
)

// Store is what an import needs of the token store (*tokens.Store).
type Store interface {
	// ImportKeys registers checked entries in order and reports each one's outcome.
	ImportKeys(ctx context.Context, entries []tokens.ImportEntry, dryRun bool) ([]tokens.ImportResult, error)
}

// Summary is the outcome of an import, in the shape of the admin API's answer (docs/reference.md §5).
type Summary struct {
	Created   int        `json:"created"`
	Updated   int        `json:"updated"`
	Unchanged int        `json:"unchanged"`
	Conflicts []Conflict `json:"conflicts"`
	Invalid   []Invalid  `json:"invalid"`
}

// Conflict is a line whose key belongs to another user: nothing changed.
type Conflict struct {
	Line int `json:"line"`
	// ID is the id of the registered key it collides with.
	ID string `json:"id"`
}

// Invalid is a line that was not imported, with the reason (never the line's text).
type Invalid struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// Failed reports whether any line was a conflict or invalid: exit status 1.
func (s Summary) Failed() bool { return len(s.Conflicts) > 0 || len(s.Invalid) > 0 }

// FileError is a file that cannot be parsed at all (an empty file, a wrong CSV header, a quote
// left open to the end, a JSON document with a syntax error): nothing was imported.
type FileError struct {
	// Line is where the problem is (0: the file as a whole).
	Line int
	// Msg says what is wrong, without quoting the file.
	Msg string
}

func (e *FileError) Error() string {
	if e.Line == 0 {
		return "the file cannot be imported: " + e.Msg
	}
	return fmt.Sprintf("the file cannot be imported: line %d: %s", e.Line, e.Msg)
}

// record is one line as parsed, before it is checked.
type record struct {
	line                 int
	user, key, name      string
	scopes               []string
	scopesGiven, problem string // problem: why the line cannot be read at all
}

// Run reads r in format f, imports every line that checks out (writing nothing when dryRun),
// and returns the summary. The error is a *FileError when the file cannot be parsed at all,
// or the store's error (tokens.ErrStoreUnavailable…) when Redis failed.
func Run(ctx context.Context, store Store, r io.Reader, f Format, dryRun bool) (Summary, error) {
	var recs []record
	var err error
	switch f {
	case CSV:
		recs, err = parseCSV(r)
	case JSONLines:
		recs, err = parseJSONLines(r)
	case Document:
		recs, err = parseDocument(r)
	default:
		return Summary{}, fmt.Errorf("keyimport: unknown format %d", f)
	}
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Conflicts: []Conflict{}, Invalid: []Invalid{}}
	var entries []tokens.ImportEntry
	for _, rec := range recs {
		e, reason := check(rec)
		if reason != "" {
			sum.Invalid = append(sum.Invalid, Invalid{Line: rec.line, Reason: reason})
			continue
		}
		entries = append(entries, e)
	}
	results, err := store.ImportKeys(ctx, entries, dryRun)
	if err != nil {
		return Summary{}, err // the store's error says what failed
	}
	for _, res := range results {
		switch res.Outcome {
		case tokens.ImportCreated:
			sum.Created++
		case tokens.ImportUpdated:
			sum.Updated++
		case tokens.ImportUnchanged:
			sum.Unchanged++
		case tokens.ImportConflict:
			sum.Conflicts = append(sum.Conflicts, Conflict{Line: res.Line, ID: res.ID})
		default: // tokens.ImportRaced
			sum.Invalid = append(sum.Invalid, Invalid{Line: res.Line,
				Reason: "the key changed while it was imported (another import or a revocation at the same moment); run the import again"})
		}
	}
	slices.SortFunc(sum.Invalid, func(a, b Invalid) int { return a.Line - b.Line })
	return sum, nil
}

// check turns a parsed line into an entry, or gives the reason it is invalid. Reasons never
// quote the line.
func check(r record) (tokens.ImportEntry, string) {
	switch {
	case r.problem != "":
		return tokens.ImportEntry{}, r.problem
	case r.user == "":
		return tokens.ImportEntry{}, "user is missing"
	case !tokens.ValidUser(r.user):
		return tokens.ImportEntry{}, "user must be 1-128 letters, digits or ._@+-"
	case r.key == "":
		return tokens.ImportEntry{}, "key is missing"
	case !tokens.WellFormed(r.key):
		return tokens.ImportEntry{}, "key is malformed: " + tokens.KeyRule
	}
	items := r.scopes
	if items == nil {
		items = scope.Fields(r.scopesGiven)
	}
	scopes, err := scope.ParseList(items, scope.KeyScopes)
	if err != nil {
		return tokens.ImportEntry{}, "scopes may hold only read, write and delete"
	}
	if len(scopes) == 0 {
		scopes = nil
	}
	return tokens.ImportEntry{Line: r.line, User: r.user, Key: r.key, Scopes: scopes, Name: r.name}, ""
}

// Detect guesses the format of a file from its first bytes: JSON Lines when the first
// character that is not white space is "{", else CSV.
func Detect(head []byte) Format {
	s := strings.TrimLeft(strings.TrimPrefix(string(head), "\ufeff"), " \t\r\n")
	if strings.HasPrefix(s, "{") {
		return JSONLines
	}
	return CSV
}

// errTooLong marks a JSON line over maxLine.
var errTooLong = errors.New("line too long")

// AuditFields are the summary's counts as audit-line fields (never a key or a line's text).
func (s Summary) AuditFields() []zap.Field {
	return []zap.Field{zap.Int("created", s.Created), zap.Int("updated", s.Updated), zap.Int("unchanged", s.Unchanged),
		zap.Int("conflicts", len(s.Conflicts)), zap.Int("invalid", len(s.Invalid))}
}

// WriteText prints the summary for people: the counts, then each conflict and invalid line by
// number (and key id), never a key.
func (s Summary) WriteText(w io.Writer, dryRun bool) error {
	var b strings.Builder
	if dryRun {
		b.WriteString("dry run, nothing was written: ")
	}
	fmt.Fprintf(&b, "%d created, %d updated, %d unchanged, %d conflicts, %d invalid\n",
		s.Created, s.Updated, s.Unchanged, len(s.Conflicts), len(s.Invalid))
	for _, c := range s.Conflicts {
		fmt.Fprintf(&b, "line %d: conflict: the key is registered to another user as key id %s; nothing changed\n", c.Line, c.ID)
	}
	for _, iv := range s.Invalid {
		fmt.Fprintf(&b, "line %d: invalid: %s\n", iv.Line, iv.Reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
