package sim

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// movie is a movie record. Default records come from the catalog; own
// records live in the user's userData.
type movie struct {
	ID          string
	Name        string
	Description string
	Director    string
	ReleaseYear int
	Genres      []genre
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// movieJSON is the wire form of a movie.
type movieJSON struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Director    string  `json:"director"`
	ReleaseYear int     `json:"releaseYear"`
	Genres      []genre `json:"genres"`
	CreatedAt   string  `json:"createdAt"`
	UpdatedAt   string  `json:"updatedAt"`
	Owned       bool    `json:"owned"`
}

func (m movie) view(owned bool) movieJSON {
	g := slices.Clone(m.Genres)
	if g == nil {
		g = []genre{}
	}
	return movieJSON{
		ID: m.ID, Name: m.Name, Description: m.Description, Director: m.Director,
		ReleaseYear: m.ReleaseYear, Genres: g,
		CreatedAt: m.CreatedAt.Format(timeLayout), UpdatedAt: m.UpdatedAt.Format(timeLayout),
		Owned: owned,
	}
}

// userData holds the records one Academy user created, oldest first. It
// outlives connections: reconnecting keeps the data.
type userData struct {
	movies []*movie
}

// dataLocked returns the user's data, creating it on first use. The caller holds s.mu.
func (s *Server) dataLocked(userID string) *userData {
	d := s.data[userID]
	if d == nil {
		d = &userData{}
		s.data[userID] = d
	}
	return d
}

// movieList is the body of GET /movies.
type movieList struct {
	Page     int         `json:"page"`
	PageSize int         `json:"pageSize"`
	Total    int         `json:"total"`
	Movies   []movieJSON `json:"movies"`
}

// handleListMovies serves GET /movies?page=N: default records first, then
// the caller's own by creation, PageSize per page, pages counted from 1.
func (s *Server) handleListMovies(w http.ResponseWriter, r *http.Request, c *caller) error {
	page := 1
	if p := r.URL.Query().Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return errorf(http.StatusBadRequest, "page must be a whole number from 1.")
		}
		page = n
	}
	all := make([]movieJSON, 0, len(s.cat.movies)+MaxOwnMovies)
	for _, m := range s.cat.movies {
		all = append(all, m.view(false))
	}
	s.mu.Lock()
	for _, m := range s.dataLocked(c.userID).movies {
		all = append(all, m.view(true))
	}
	s.mu.Unlock()
	res := movieList{Page: page, PageSize: PageSize, Total: len(all), Movies: []movieJSON{}}
	if start := (page - 1) * PageSize; start < len(all) {
		res.Movies = all[start:min(start+PageSize, len(all))]
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// genreRef is a genre as clients send it: {"id":"1"}.
type genreRef struct {
	ID string `json:"id"`
}

// movieInput is the body of POST, PUT and PATCH /movies. Nil fields were
// not sent.
type movieInput struct {
	Name        *string     `json:"name"`
	Description *string     `json:"description"`
	Director    *string     `json:"director"`
	ReleaseYear *int        `json:"releaseYear"`
	Genres      *[]genreRef `json:"genres"`
}

// readMovieInput decodes and validates a movie body. full means every field
// is replaced (POST, PUT), so name is required; otherwise (PATCH) only the
// fields sent change. It returns a function that applies the input.
func (s *Server) readMovieInput(w http.ResponseWriter, r *http.Request, full bool) (func(*movie), error) {
	var in movieInput
	if err := decodeJSON(w, r, &in); err != nil {
		return nil, err
	}
	if (full && in.Name == nil) || (in.Name != nil && strings.TrimSpace(*in.Name) == "") {
		return nil, errorf(http.StatusBadRequest, "The name field is required.")
	}
	if in.ReleaseYear != nil && (*in.ReleaseYear < 1870 || *in.ReleaseYear > 2100) {
		return nil, errorf(http.StatusBadRequest, "releaseYear must be a year between 1870 and 2100.")
	}
	var genres []genre
	if in.Genres != nil {
		for _, ref := range *in.Genres {
			g, ok := s.cat.genreByID(ref.ID)
			if !ok {
				return nil, errorf(http.StatusBadRequest, "Unknown genre id %q.", ref.ID)
			}
			if !slices.Contains(genres, g) {
				genres = append(genres, g)
			}
		}
	}
	return func(m *movie) {
		if full {
			*m = movie{ID: m.ID, CreatedAt: m.CreatedAt}
		}
		set(&m.Name, in.Name)
		set(&m.Description, in.Description)
		set(&m.Director, in.Director)
		set(&m.ReleaseYear, in.ReleaseYear)
		if in.Genres != nil {
			m.Genres = genres
		}
	}, nil
}

// set stores *v in dst when v is not nil.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// handleCreateMovie serves POST /movies: 201 with the new own record, or
// 400 once the user has MaxOwnMovies records.
func (s *Server) handleCreateMovie(w http.ResponseWriter, r *http.Request, c *caller) error {
	apply, err := s.readMovieInput(w, r, true)
	if err != nil {
		return err
	}
	s.mu.Lock()
	d := s.dataLocked(c.userID)
	if len(d.movies) >= MaxOwnMovies {
		s.mu.Unlock()
		return errorf(http.StatusBadRequest, "Record limit reached: you can create at most %d records.", MaxOwnMovies)
	}
	now := s.opts.Now()
	m := &movie{ID: s.newMovieIDLocked(d), CreatedAt: now}
	apply(m)
	m.UpdatedAt = now
	d.movies = append(d.movies, m)
	v := m.view(true)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// newMovieIDLocked returns a random 12-hex ID used by no record the user
// can see. The caller holds s.mu.
func (s *Server) newMovieIDLocked(d *userData) string {
	for {
		b := make([]byte, 6)
		_, _ = rand.Read(b) // never fails since Go 1.24
		id := hex.EncodeToString(b)
		if _, taken := s.cat.defaultMovie(id); !taken && d.find(id) < 0 {
			return id
		}
	}
}

// find returns the index of the own record with the given ID, or -1.
func (d *userData) find(id string) int {
	return slices.IndexFunc(d.movies, func(m *movie) bool { return m.ID == id })
}

// handleGetMovie serves GET /movies/{id} for default and own records.
func (s *Server) handleGetMovie(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if m, ok := s.cat.defaultMovie(id); ok {
		writeJSON(w, http.StatusOK, m.view(false))
		return nil
	}
	s.mu.Lock()
	d := s.dataLocked(c.userID)
	i := d.find(id)
	var v movieJSON
	if i >= 0 {
		v = d.movies[i].view(true)
	}
	s.mu.Unlock()
	if i < 0 {
		return errRecordNotFound()
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// errRecordNotFound answers an ID that is neither a default nor an own record.
func errRecordNotFound() error {
	return errorf(http.StatusNotFound, "Record not found.")
}

// errDefaultRecord answers a change to a default record.
func errDefaultRecord() error {
	return errorf(http.StatusForbidden, "Default records cannot be changed.")
}

// handleReplaceMovie serves PUT /movies/{id}: a full replace of an own record.
func (s *Server) handleReplaceMovie(w http.ResponseWriter, r *http.Request, c *caller) error {
	return s.updateMovie(w, r, c, true)
}

// handlePatchMovie serves PATCH /movies/{id}: a partial update of an own record.
func (s *Server) handlePatchMovie(w http.ResponseWriter, r *http.Request, c *caller) error {
	return s.updateMovie(w, r, c, false)
}

func (s *Server) updateMovie(w http.ResponseWriter, r *http.Request, c *caller, full bool) error {
	id := r.PathValue("id")
	if _, ok := s.cat.defaultMovie(id); ok {
		return errDefaultRecord()
	}
	apply, err := s.readMovieInput(w, r, full)
	if err != nil {
		return err
	}
	s.mu.Lock()
	d := s.dataLocked(c.userID)
	i := d.find(id)
	if i < 0 {
		s.mu.Unlock()
		return errRecordNotFound()
	}
	m := d.movies[i]
	apply(m)
	m.UpdatedAt = s.opts.Now()
	v := m.view(true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
	return nil
}

// handleDeleteMovie serves DELETE /movies/{id}: 204 for an own record.
func (s *Server) handleDeleteMovie(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if _, ok := s.cat.defaultMovie(id); ok {
		return errDefaultRecord()
	}
	s.mu.Lock()
	d := s.dataLocked(c.userID)
	i := d.find(id)
	if i >= 0 {
		d.movies = slices.Delete(d.movies, i, i+1)
	}
	s.mu.Unlock()
	if i < 0 {
		return errRecordNotFound()
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleGenres serves GET /genres.
func (s *Server) handleGenres(w http.ResponseWriter, _ *http.Request, _ *caller) error {
	writeJSON(w, http.StatusOK, map[string][]genre{"genres": s.cat.genres})
	return nil
}

// handleOrganizations serves GET /organizations.
func (s *Server) handleOrganizations(w http.ResponseWriter, _ *http.Request, _ *caller) error {
	writeJSON(w, http.StatusOK, map[string][]organization{"organizations": s.cat.organizations})
	return nil
}

// handlePeople serves GET /people?q=…, filtered by peopleFilter.
func (s *Server) handlePeople(w http.ResponseWriter, r *http.Request, _ *caller) error {
	match, err := peopleFilter(r.URL.Query().Get("q"))
	if err != nil {
		return err
	}
	out := []person{}
	for _, p := range s.cat.people {
		if match(p.Name) {
			out = append(out, p)
		}
	}
	writeJSON(w, http.StatusOK, map[string][]person{"people": out})
	return nil
}

// aboutResponse is the body of GET /about.
type aboutResponse struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	User        string `json:"user"`
	Email       string `json:"email"`
	OwnRecords  int    `json:"ownRecords"`
	RecordLimit int    `json:"recordLimit"`
}

// handleAbout serves GET /about: the API and the connected account.
func (s *Server) handleAbout(w http.ResponseWriter, _ *http.Request, c *caller) error {
	u, _ := s.findUser(c.userID)
	s.mu.Lock()
	own := len(s.dataLocked(c.userID).movies)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, aboutResponse{
		Name: "Make App Academy API", Version: "2", User: u.Name, Email: u.Email,
		OwnRecords: own, RecordLimit: MaxOwnMovies,
	})
	return nil
}
