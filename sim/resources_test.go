package sim

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// listPage is the decoded body of GET /movies.
type listPage struct {
	Page     int         `json:"page"`
	PageSize int         `json:"pageSize"`
	Total    int         `json:"total"`
	Movies   []movieJSON `json:"movies"`
}

func (e *env) listMovies(token string, page int) listPage {
	e.t.Helper()
	rec := e.do(http.MethodGet, fmt.Sprintf("/movies?page=%d", page), token, nil)
	if rec.Code != http.StatusOK {
		e.t.Fatalf("GET /movies?page=%d = %d; %s", page, rec.Code, rec.Body)
	}
	return decode[listPage](e.t, rec)
}

func (e *env) createMovie(token string, body any) movieJSON {
	e.t.Helper()
	rec := e.do(http.MethodPost, "/movies", token, body)
	if rec.Code != http.StatusCreated {
		e.t.Fatalf("POST /movies = %d, want 201; %s", rec.Code, rec.Body)
	}
	return decode[movieJSON](e.t, rec)
}

func TestMovieList(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.connect("john", allScopes).AccessToken

	p1 := e.listMovies(tok, 1)
	if p1.Page != 1 || p1.PageSize != 5 || p1.Total != 6 || len(p1.Movies) != 5 {
		t.Fatalf("page 1 = %+v, want page 1 of 5 with total 6", p1)
	}
	first := p1.Movies[0]
	if first.Name != "The Matrix" || first.Owned || first.CreatedAt != "2023-04-13T17:04:47+00:00" ||
		!reflect.DeepEqual(first.Genres, []genre{{"1", "action"}, {"8", "sci-fi"}}) {
		t.Errorf("first default record = %+v", first)
	}
	// No page parameter means page 1.
	if rec := e.do(http.MethodGet, "/movies", tok, nil); !reflect.DeepEqual(decode[listPage](t, rec), p1) {
		t.Errorf("GET /movies differs from page 1")
	}
	for _, bad := range []string{"0", "-1", "x", "1.5"} {
		wantError(t, e.do(http.MethodGet, "/movies?page="+bad, tok, nil), http.StatusBadRequest)
	}

	for i := range MaxOwnMovies {
		e.clock.Advance(time.Second)
		e.createMovie(tok, map[string]any{"name": fmt.Sprintf("Own %02d", i)})
	}
	var names []string
	for page := 1; page <= 5; page++ {
		p := e.listMovies(tok, page)
		if p.Total != 20 {
			t.Errorf("page %d total = %d, want 20", page, p.Total)
		}
		wantLen := min(5, max(0, 20-(page-1)*5))
		if len(p.Movies) != wantLen || p.Movies == nil {
			t.Errorf("page %d has %d movies (nil=%v), want %d", page, len(p.Movies), p.Movies == nil, wantLen)
		}
		for _, m := range p.Movies {
			names = append(names, m.Name)
		}
	}
	wantNames := []string{"The Matrix", "Inception", "Iron Man", "The Godfather", "Spirited Away", "Pulp Fiction"}
	for i := range MaxOwnMovies {
		wantNames = append(wantNames, fmt.Sprintf("Own %02d", i))
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("order = %v, want defaults then own records by creation", names)
	}

	msg := wantError(t, e.do(http.MethodPost, "/movies", tok, `{"name":"One too many"}`), http.StatusBadRequest)
	if !strings.HasPrefix(msg, "Record limit reached") {
		t.Errorf("15th record: message = %q", msg)
	}
	// Records are per Academy user.
	jane := e.connect("jane", allScopes).AccessToken
	if p := e.listMovies(jane, 1); p.Total != 6 {
		t.Errorf("Jane sees %d records, want 6", p.Total)
	}
	// And survive reconnecting.
	if p := e.listMovies(e.connect("john", allScopes).AccessToken, 1); p.Total != 20 {
		t.Errorf("after reconnect John sees %d records, want 20", p.Total)
	}
}

func TestMovieCRUD(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.connect("john", allScopes).AccessToken
	defaultID := e.listMovies(tok, 1).Movies[0].ID

	m := e.createMovie(tok, `{"name":"Iron Man 2","director":"Jon Favreau","releaseYear":2010,"genres":[{"id":"1"},{"id":"8"}],"custom":"ignored"}`)
	if len(m.ID) != 12 || !m.Owned || m.CreatedAt != e.clock.Now().Format(timeLayout) || m.CreatedAt != m.UpdatedAt {
		t.Errorf("created = %+v", m)
	}
	want := movieJSON{ID: m.ID, Name: "Iron Man 2", Director: "Jon Favreau", ReleaseYear: 2010,
		Genres: []genre{{"1", "action"}, {"8", "sci-fi"}}, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, Owned: true}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("created = %+v, want %+v", m, want)
	}
	if got := decode[movieJSON](t, e.do(http.MethodGet, "/movies/"+m.ID, tok, nil)); !reflect.DeepEqual(got, want) {
		t.Errorf("GET = %+v, want %+v", got, want)
	}

	e.clock.Advance(time.Minute)
	rec := e.do(http.MethodPatch, "/movies/"+m.ID, tok, `{"description":"Tony is back."}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("PATCH = %d; %s", rec.Code, rec.Body)
	}
	patched := decode[movieJSON](t, rec)
	if patched.Description != "Tony is back." || patched.Director != "Jon Favreau" || patched.UpdatedAt == patched.CreatedAt {
		t.Errorf("PATCH result = %+v, want description set and the rest kept", patched)
	}
	rec = e.do(http.MethodPut, "/movies/"+m.ID, tok, `{"name":"Iron Man 3"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("PUT = %d; %s", rec.Code, rec.Body)
	}
	put := decode[movieJSON](t, rec)
	if put.Name != "Iron Man 3" || put.Director != "" || put.Description != "" || len(put.Genres) != 0 || put.CreatedAt != m.CreatedAt {
		t.Errorf("PUT result = %+v, want a full replace keeping id and createdAt", put)
	}

	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"create without name", http.MethodPost, "/movies", `{"director":"x"}`, 400},
		{"create blank name", http.MethodPost, "/movies", `{"name":"  "}`, 400},
		{"create bad genre", http.MethodPost, "/movies", `{"name":"x","genres":[{"id":"99"}]}`, 400},
		{"create bad year", http.MethodPost, "/movies", `{"name":"x","releaseYear":"2008"}`, 400},
		{"create not JSON", http.MethodPost, "/movies", `name=x`, 400},
		{"put without name", http.MethodPut, "/movies/" + m.ID, `{"director":"x"}`, 400},
		{"patch blank name", http.MethodPatch, "/movies/" + m.ID, `{"name":""}`, 400},
		{"put default", http.MethodPut, "/movies/" + defaultID, `{"name":"x"}`, 403},
		{"patch default", http.MethodPatch, "/movies/" + defaultID, `{"name":"x"}`, 403},
		{"delete default", http.MethodDelete, "/movies/" + defaultID, ``, 403},
		{"get unknown", http.MethodGet, "/movies/000000000000", ``, 404},
		{"patch unknown", http.MethodPatch, "/movies/000000000000", `{"name":"x"}`, 404},
		{"delete unknown", http.MethodDelete, "/movies/000000000000", ``, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := wantError(t, e.do(tt.method, tt.path, tok, tt.body), tt.status)
			if tt.status == http.StatusForbidden && msg != "Default records cannot be changed." {
				t.Errorf("message = %q", msg)
			}
		})
	}

	// Jane can neither see nor change John's record.
	jane := e.connect("jane", allScopes).AccessToken
	wantError(t, e.do(http.MethodGet, "/movies/"+m.ID, jane, nil), http.StatusNotFound)
	wantError(t, e.do(http.MethodDelete, "/movies/"+m.ID, jane, nil), http.StatusNotFound)

	rec = e.do(http.MethodDelete, "/movies/"+m.ID, tok, nil)
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Fatalf("DELETE = %d %q, want 204 and no body", rec.Code, rec.Body)
	}
	wantError(t, e.do(http.MethodGet, "/movies/"+m.ID, tok, nil), http.StatusNotFound)
	if p := e.listMovies(tok, 1); p.Total != 6 {
		t.Errorf("total after delete = %d, want 6", p.Total)
	}
	// Deleting frees a slot under the limit.
	for i := range MaxOwnMovies {
		e.createMovie(tok, map[string]string{"name": fmt.Sprint(i)})
	}
}

func TestCatalogEndpoints(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.connect("john", "connect read").AccessToken

	genres := decode[map[string][]genre](t, e.do(http.MethodGet, "/genres", tok, nil))["genres"]
	if len(genres) == 0 || genres[0] != (genre{"1", "action"}) {
		t.Errorf("genres = %v", genres)
	}
	orgs := decode[map[string][]organization](t, e.do(http.MethodGet, "/organizations", tok, nil))["organizations"]
	if len(orgs) == 0 || len(orgs[0].ID) != 12 {
		t.Errorf("organizations = %v", orgs)
	}
	about := decode[map[string]any](t, e.do(http.MethodGet, "/about", tok, nil))
	if about["name"] != "Make App Academy API" || about["version"] != "2" || about["user"] != "John Doe" {
		t.Errorf("about = %v", about)
	}

	peopleTests := []struct {
		q    string
		want []string
	}{
		{"rob", []string{"Robert Downey Jr."}},
		{"ROBERT", []string{"Robert Downey Jr."}},
		{"wachowski", []string{"Lana Wachowski", "Lilly Wachowski"}},
		{"nobody", []string{}},
		{`contains= "Rob" AND startsWith = "Rob" AND endsWith = "Jr."`, []string{"Robert Downey Jr."}},
		{`equals = "al pacino"`, []string{"Al Pacino"}},
		{`equal="Al Pacino"`, []string{"Al Pacino"}},
		{`startsWith = "L" and endsWith = "i"`, []string{"Lana Wachowski", "Lilly Wachowski"}},
	}
	for _, tt := range peopleTests {
		rec := e.do(http.MethodGet, "/people?q="+urlQueryEscape(tt.q), tok, nil)
		var got []string
		for _, p := range decode[map[string][]person](t, rec)["people"] {
			got = append(got, p.Name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("q=%q: people = %q, want %q", tt.q, got, tt.want)
		}
	}
	if all := decode[map[string][]person](t, e.do(http.MethodGet, "/people", tok, nil))["people"]; len(all) < 10 {
		t.Errorf("GET /people without q gave %d people", len(all))
	}
	for _, bad := range []string{`contains "x"`, `like = "x"`, `contains = "x`, `contains = "x" OR equals = "y"`} {
		wantError(t, e.do(http.MethodGet, "/people?q="+urlQueryEscape(bad), tok, nil), http.StatusBadRequest)
	}
}
