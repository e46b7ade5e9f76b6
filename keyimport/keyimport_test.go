package keyimport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/academy-gateway/academy-gateway/keyimport"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// fakeStore is an in-memory keyimport.Store with the outcome rules of docs/reference.md §2.1 (the Redis
// implementation is tested against real servers in package tokens).
type fakeStore struct {
	keys  map[string]tokens.ImportEntry // by key
	calls int
	err   error
}

func newFake(existing ...tokens.ImportEntry) *fakeStore {
	f := &fakeStore{keys: map[string]tokens.ImportEntry{}}
	for _, e := range existing {
		f.keys[e.Key] = e
	}
	return f
}

func (f *fakeStore) ImportKeys(_ context.Context, entries []tokens.ImportEntry, dryRun bool) ([]tokens.ImportResult, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	keys := f.keys
	if dryRun {
		keys = map[string]tokens.ImportEntry{}
		for k, v := range f.keys {
			keys[k] = v
		}
	}
	var out []tokens.ImportResult
	for _, e := range entries {
		id := tokens.HashKey(e.Key)[:16]
		cur, ok := keys[e.Key]
		res := tokens.ImportResult{Line: e.Line, ID: id}
		switch {
		case !ok:
			res.Outcome = tokens.ImportCreated
			keys[e.Key] = e
		case cur.User != e.User:
			res.Outcome = tokens.ImportConflict
		case slices.Equal(cur.Scopes, e.Scopes) && cur.Name == e.Name:
			res.Outcome = tokens.ImportUnchanged
		default:
			res.Outcome = tokens.ImportUpdated
			keys[e.Key] = e
		}
		out = append(out, res)
	}
	return out, nil
}

// secret marks every key in the fixtures: it must never show in a summary.
const secret = "S3CR3T"

func id(key string) string { return tokens.HashKey(key)[:16] }

func TestRun(t *testing.T) {
	existing := []tokens.ImportEntry{
		{User: "alice", Key: "k-" + secret + "-alice", Scopes: []string{"read"}, Name: "old"},
		{User: "bob", Key: "k-" + secret + "-bob"},
	}
	bad := "agw_" + secret + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" // agw_ prefix, wrong checksum
	tests := []struct {
		name   string
		format keyimport.Format
		input  string
		want   keyimport.Summary
	}{
		{
			name:   "CSV, every outcome",
			format: keyimport.CSV,
			input: "user,key,scopes,name\n" +
				"carol,k-" + secret + "-carol,read write,new\n" + // 2 created
				"alice,k-" + secret + "-alice,read write,old\n" + // 3 updated
				"bob,k-" + secret + "-bob,,\n" + // 4 unchanged
				"carol,k-" + secret + "-bob,,\n" + // 5 conflict
				",k-" + secret + "-nouser,,\n" + // 6 invalid: no user
				"dan,,,\n" + // 7 invalid: no key
				"dan," + bad + ",,\n" + // 8 invalid: malformed key
				"dan,k-" + secret + "-dan,admin " + secret + ",\n" + // 9 invalid: scope
				"d{a}n,k-" + secret + "-dan2,,\n", // 10 invalid: user
			want: keyimport.Summary{Created: 1, Updated: 1, Unchanged: 1,
				Conflicts: []keyimport.Conflict{{Line: 5, ID: id("k-" + secret + "-bob")}},
				Invalid: []keyimport.Invalid{
					{Line: 6, Reason: "user is missing"},
					{Line: 7, Reason: "key is missing"},
					{Line: 8, Reason: "key is malformed: " + tokens.KeyRule},
					{Line: 9, Reason: "scopes may hold only read, write and delete"},
					{Line: 10, Reason: "user must be 1-128 letters, digits or ._@+-"},
				}},
		},
		{
			name:   "JSON Lines, every outcome",
			format: keyimport.JSONLines,
			input: `{"user":"carol","key":"k-` + secret + `-carol","scopes":["read","write"],"name":"new"}` + "\n" +
				`{"user":"alice","key":"k-` + secret + `-alice","scopes":["read","write"],"name":"old"}` + "\n" +
				"\n" + // 3 blank: skipped, but counted
				`{"user":"bob","key":"k-` + secret + `-bob"}` + "\n" +
				`{"user":"carol","key":"k-` + secret + `-bob","scopes":[]}` + "\n" +
				`{"key":"k-` + secret + `-nouser"}` + "\n" +
				`{"user":"dan","key":"k-` + secret + `-x",` + "\n" + // 7: syntax error
				`{"user":"dan","key":"` + bad + `"}` + "\n" +
				`{"user":"dan","key":"k-` + secret + `-dan","scopes":["` + secret + `"]}` + "\n" +
				`{"user":"dan","key":"k-` + secret + `-dan","extra":"` + secret + `"}` + "\n" +
				`{"user":"dan","key":"k-` + secret + `-dan","scopes":"read"}` + "\n" +
				`{"user":"dan","key":"k-` + secret + `-dan"} {"more":1}` + "\n" +
				`["dan","k-` + secret + `"]` + "\n" +
				`{"user":"erin","key":"k-` + secret + `-erin","name":"last line, no newline"}`,
			want: keyimport.Summary{Created: 2, Updated: 1, Unchanged: 1,
				Conflicts: []keyimport.Conflict{{Line: 5, ID: id("k-" + secret + "-bob")}},
				Invalid: []keyimport.Invalid{
					{Line: 6, Reason: "user is missing"},
					{Line: 7, Reason: "the line is not a JSON object of user, key, scopes and name: the JSON ends early"},
					{Line: 8, Reason: "key is malformed: " + tokens.KeyRule},
					{Line: 9, Reason: "scopes may hold only read, write and delete"},
					{Line: 10, Reason: "the line is not a JSON object of user, key, scopes and name: it has a field other than user, key, scopes and name"},
					{Line: 11, Reason: "the line is not a JSON object of user, key, scopes and name: scopes has the wrong type"},
					{Line: 12, Reason: "the line is not a JSON object of user, key, scopes and name: data after the object"},
					{Line: 13, Reason: "the line is not a JSON object of user, key, scopes and name: it is not an object"},
				}},
		},
		{
			name:   "JSON document: positions are lines",
			format: keyimport.Document,
			input:  `{"keys":[{"user":"carol","key":"k-` + secret + `-carol"},` + "\n" + `{"user":"carol","key":"k-` + secret + `-bob"}, 7, {"user":"x"}]}`,
			want: keyimport.Summary{Created: 1,
				Conflicts: []keyimport.Conflict{{Line: 2, ID: id("k-" + secret + "-bob")}},
				Invalid: []keyimport.Invalid{
					{Line: 3, Reason: "the line is not a JSON object of user, key, scopes and name: it is not an object"},
					{Line: 4, Reason: "key is missing"},
				}},
		},
		{
			name:   "CSV: header in another order, BOM, CRLF, quoting",
			format: keyimport.CSV,
			input: "\ufeffName,Scopes,Key,User\r\n" +
				"\"multi\nline\",,\"k-" + secret + ",with\"\"quote\",carol\r\n" + // 2-3: one record
				"x,read,k-" + secret + "-0004,carol\r\n" + // 4
				"x,read,k-" + secret + "-5\r\n" + // 5: a field short
				"x,read,k\"" + secret + ",carol\r\n" + // 6: bare quote
				"x,,k-" + secret + "-0007,carol\r\n", // 7
			want: keyimport.Summary{Created: 3, Conflicts: []keyimport.Conflict{},
				Invalid: []keyimport.Invalid{
					{Line: 5, Reason: "the line has 3 fields; the header has 4"},
					{Line: 6, Reason: `the line does not parse as CSV: bare " in non-quoted-field (column 9)`},
				}},
		},
		{
			name:   "CSV: header only",
			format: keyimport.CSV,
			input:  "user,key,scopes,name\n",
			want:   keyimport.Summary{Conflicts: []keyimport.Conflict{}, Invalid: []keyimport.Invalid{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, dry := range []bool{true, false} {
				f := newFake(existing...)
				got, err := keyimport.Run(context.Background(), f, strings.NewReader(tt.input), tt.format, dry)
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if tt.want.Conflicts == nil {
					tt.want.Conflicts = []keyimport.Conflict{}
				}
				if tt.want.Invalid == nil {
					tt.want.Invalid = []keyimport.Invalid{}
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("dry run %v: summary (-want +got):\n%s", dry, diff)
				}
				if got.Failed() != (len(tt.want.Conflicts)+len(tt.want.Invalid) > 0) {
					t.Errorf("Failed() = %v", got.Failed())
				}
				var text bytes.Buffer
				if err := got.WriteText(&text, dry); err != nil {
					t.Fatal(err)
				}
				js, _ := json.Marshal(got)
				for _, out := range []string{text.String(), string(js)} {
					if strings.Contains(out, secret) {
						t.Errorf("the summary quotes the file: %s", out)
					}
				}
				if dry != strings.HasPrefix(text.String(), "dry run") {
					t.Errorf("text summary %q does not say whether it was a dry run", text.String())
				}
			}
		})
	}
}

func TestRunFileErrors(t *testing.T) {
	tests := []struct {
		name     string
		format   keyimport.Format
		input    string
		wantLine int
		wantMsg  string
	}{
		{"empty CSV", keyimport.CSV, "", 0, "the file is empty"},
		{"wrong header", keyimport.CSV, "user,apikey,scopes,name\nalice,k-" + secret + ",,\n", 1, "user,key,scopes,name"},
		{"missing column", keyimport.CSV, "user,key,scopes\nalice,k-" + secret + ",\n", 1, "user,key,scopes,name"},
		{"repeated column", keyimport.CSV, "user,key,key,name\n", 1, "each once"},
		{"no header, just data", keyimport.CSV, "alice,k-" + secret + ",read,x\n", 1, "user,key,scopes,name"},
		{"quote open to the end", keyimport.CSV, "user,key,scopes,name\nalice,k-1,,x\nbob,\"k-" + secret + ",,\ncarol,k-3,,\n", 3, "not closed"},
		{"blank JSON Lines", keyimport.JSONLines, "\n\n  \n", 0, "no lines"},
		{"document syntax error", keyimport.Document, "{\"keys\":[\n{\"user\":\"a\",\"key\":\"k-" + secret + "\"}\n{\"user\":\"b\"}]}", 3, "not JSON"},
		{"document of another shape", keyimport.Document, `{"entries":[]}`, 0, `{"keys":[…]}`},
		{"document without keys", keyimport.Document, `{}`, 0, `{"keys":[…]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			_, err := keyimport.Run(context.Background(), f, strings.NewReader(tt.input), tt.format, false)
			var fe *keyimport.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("Run = %v, want a *FileError", err)
			}
			if fe.Line != tt.wantLine || !strings.Contains(fe.Error(), tt.wantMsg) {
				t.Errorf("FileError = line %d %q, want line %d and %q", fe.Line, fe.Error(), tt.wantLine, tt.wantMsg)
			}
			if strings.Contains(fe.Error(), secret) {
				t.Errorf("the error quotes the file: %v", fe)
			}
			if f.calls != 0 {
				t.Errorf("the store was called %d times for a file that cannot be parsed", f.calls)
			}
		})
	}
}

func TestRunStoreError(t *testing.T) {
	f := newFake()
	f.err = tokens.ErrStoreUnavailable
	_, err := keyimport.Run(context.Background(), f, strings.NewReader("user,key,scopes,name\na,legacy-key-1,,\n"), keyimport.CSV, false)
	if !errors.Is(err, tokens.ErrStoreUnavailable) {
		t.Errorf("Run = %v, want the store's error", err)
	}
}

func TestLongJSONLine(t *testing.T) {
	long := `{"user":"a","key":"legacy-key-1","name":"` + strings.Repeat("n", 70<<10) + `"}`
	input := long + "\n" + `{"user":"b","key":"legacy-key-2"}` + "\n"
	got, err := keyimport.Run(context.Background(), newFake(), strings.NewReader(input), keyimport.JSONLines, false)
	if err != nil {
		t.Fatal(err)
	}
	want := keyimport.Summary{Created: 1, Conflicts: []keyimport.Conflict{},
		Invalid: []keyimport.Invalid{{Line: 1, Reason: "the line is longer than 64 KiB"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

func TestJSONLinesByteOrderMark(t *testing.T) {
	input := "\ufeff" + `{"user":"a","key":"legacy-key-1"}` + "\n"
	got, err := keyimport.Run(context.Background(), newFake(), strings.NewReader(input), keyimport.JSONLines, false)
	if err != nil || got.Created != 1 || len(got.Invalid) != 0 {
		t.Errorf("Run = %+v, %v; want the line created", got, err)
	}
}

func TestDetect(t *testing.T) {
	for in, want := range map[string]keyimport.Format{
		`{"user":"a"}`:               keyimport.JSONLines,
		"\ufeff\n  {\"user\":\"a\"}": keyimport.JSONLines,
		"user,key,scopes,name\n":     keyimport.CSV,
		"":                           keyimport.CSV,
	} {
		if got := keyimport.Detect([]byte(in)); got != want {
			t.Errorf("Detect(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzRun: no input makes Run panic, and no summary or file error quotes a key.
func FuzzRun(f *testing.F) {
	f.Add("user,key,scopes,name\nalice,k-"+secret+",read,x\n", 0)
	f.Add(`{"user":"alice","key":"k-`+secret+`"}`+"\n{", 1)
	f.Add(`{"keys":[{"user":"alice","key":"k-`+secret+`"}]}`, 2)
	f.Add("user,key,scopes,name\n\"", 0)
	f.Fuzz(func(t *testing.T, input string, format int) {
		fm := keyimport.Format(((format % 3) + 3) % 3)
		sum, err := keyimport.Run(context.Background(), newFake(), strings.NewReader(input), fm, true)
		var out string
		if err != nil {
			out = err.Error()
		} else {
			js, _ := json.Marshal(sum)
			out = string(js)
		}
		if strings.Contains(input, secret) && strings.Contains(out, secret) {
			t.Errorf("output quotes the input: %s", out)
		}
	})
}
