package keyimport

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// csvColumns are the columns of the CSV header row (docs/reference.md §2.1).
var csvColumns = []string{"user", "key", "scopes", "name"}

// parseCSV reads a CSV file whose first row is the header. A record that does not parse is an
// invalid line; a wrong header, or a quote left open so that the rest of the file is one field,
// makes the whole file unreadable.
func parseCSV(r io.Reader) ([]record, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // counted per line below, so a short line is one invalid line
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &FileError{Msg: "the file is empty; a CSV import starts with the header row user,key,scopes,name"}
	}
	if err != nil {
		return nil, &FileError{Line: 1, Msg: "the header row does not parse as CSV: " + csvProblem(err)}
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, dup := col[h]; dup || !slices.Contains(csvColumns, h) {
			return nil, &FileError{Line: 1, Msg: "the header row must name the columns user,key,scopes,name, each once"}
		}
		col[h] = i
	}
	if len(col) != len(csvColumns) {
		return nil, &FileError{Line: 1, Msg: "the header row must name the columns user,key,scopes,name, each once"}
	}
	var out []record
	for {
		fields, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			if pe.StartLine != pe.Line && errors.Is(pe.Err, csv.ErrQuote) {
				return nil, &FileError{Line: pe.StartLine, Msg: fmt.Sprintf("a quoted field opened here is not closed properly (the parser reached line %d); nothing was imported", pe.Line)}
			}
			out = append(out, record{line: pe.StartLine, problem: "the line does not parse as CSV: " + csvProblem(err)})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read the file: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(fields) != len(header) {
			out = append(out, record{line: line, problem: fmt.Sprintf("the line has %d fields; the header has %d", len(fields), len(header))})
			continue
		}
		out = append(out, record{line: line,
			user:        strings.TrimSpace(fields[col["user"]]),
			key:         fields[col["key"]],
			scopesGiven: fields[col["scopes"]],
			name:        fields[col["name"]],
		})
	}
}

// csvProblem names a CSV error without the parser's position text (the line is reported apart).
func csvProblem(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%v (column %d)", pe.Err, pe.Column)
	}
	return err.Error()
}

// jsonEntry is one JSON line or element.
type jsonEntry struct {
	User   *string   `json:"user"`
	Key    *string   `json:"key"`
	Scopes *[]string `json:"scopes"`
	Name   *string   `json:"name"`
}

// maxLine bounds one JSON line; a longer one is an invalid line.
const maxLine = 64 << 10

// parseJSONLines reads one JSON object per line; blank lines are skipped (and counted).
func parseJSONLines(r io.Reader) ([]record, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []record
	nonBlank := false
	for line := 1; ; line++ {
		text, err := readLine(br)
		if errors.Is(err, io.EOF) && text == nil {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errTooLong) {
			return nil, fmt.Errorf("read the file: %w", err)
		}
		if errors.Is(err, errTooLong) {
			nonBlank = true
			out = append(out, record{line: line, problem: fmt.Sprintf("the line is longer than %d KiB", maxLine>>10)})
			continue
		}
		if line == 1 {
			text = bytes.TrimPrefix(text, []byte("\ufeff")) // a byte-order mark some editors write
		}
		text = bytes.TrimSpace(text)
		if len(text) == 0 {
			continue
		}
		nonBlank = true
		out = append(out, decodeEntry(line, text))
	}
	if !nonBlank {
		return nil, &FileError{Msg: "the file holds no lines"}
	}
	return out, nil
}

// readLine returns the next line without its newline; errTooLong (the rest of the line is
// skipped) when it exceeds maxLine; io.EOF with nil at the end.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > maxLine+2 {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) == 0 && !tooLong && len(chunk) == 0 {
				return nil, io.EOF
			}
		case err != nil:
			return nil, err
		}
		if tooLong {
			return []byte{}, errTooLong
		}
		return bytes.TrimRight(buf, "\r\n"), nil
	}
}

// decodeEntry decodes one JSON object; a line that does not decode is invalid with a reason
// that names no value from the line.
func decodeEntry(line int, text []byte) record {
	if !utf8.Valid(text) {
		return record{line: line, problem: "the line is not UTF-8 text"}
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	var e jsonEntry
	err := dec.Decode(&e)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("data after the object")
		}
	}
	if err != nil {
		return record{line: line, problem: "the line is not a JSON object of user, key, scopes and name: " + jsonProblem(err)}
	}
	r := record{line: line, scopes: []string{}}
	if e.User != nil {
		r.user = strings.TrimSpace(*e.User)
	}
	if e.Key != nil {
		r.key = *e.Key
	}
	if e.Name != nil {
		r.name = *e.Name
	}
	if e.Scopes != nil {
		r.scopes = append(r.scopes, *e.Scopes...)
	}
	return r
}

// jsonProblem describes a decoding error without quoting the input.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s has the wrong type", typ.Field)
		}
		return "it is not an object"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the JSON ends early"
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return "it has a field other than user, key, scopes and name"
	default:
		return "data after the object"
	}
}

// parseDocument reads {"keys":[…]}; the "line" of an element is its position from 1. A
// document that does not parse as a whole imports nothing; an element that is not an entry is
// an invalid line.
func parseDocument(r io.Reader) ([]record, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read the body: %w", err)
	}
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(&doc)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("data after the object")
		}
	}
	if err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			line := 1 + bytes.Count(data[:min(int(syntax.Offset), len(data))], []byte("\n"))
			return nil, &FileError{Line: line, Msg: "the body is not JSON: " + jsonProblem(err)}
		}
		return nil, &FileError{Msg: `the body must be {"keys":[…]}: ` + jsonProblem(err)}
	}
	if doc.Keys == nil {
		return nil, &FileError{Msg: `the body must be {"keys":[…]}`}
	}
	out := make([]record, len(*doc.Keys))
	for i, raw := range *doc.Keys {
		out[i] = decodeEntry(i+1, raw)
	}
	return out, nil
}
