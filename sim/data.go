package sim

import "time"

// Limits the Academy documents for the movie records of one user.
const (
	// PageSize is the default and maximum number of records per page.
	PageSize = 5
	// MaxOwnMovies is how many records one user may create, on top of the
	// six default records.
	MaxOwnMovies = 14
)

// timeLayout is ISO-8601 with a numeric offset, as in the Academy samples
// ("2023-04-13T17:04:47+00:00"), rather than RFC 3339's "Z".
const timeLayout = "2006-01-02T15:04:05-07:00"

// demoUsers returns the two accounts offered on the consent page.
func demoUsers() []User {
	return []User{
		{ID: "1b8318146aa7", Name: "John Doe", Email: "john.doe@example.com"},
		{ID: "1edcaee38072", Name: "Jane Black", Email: "jane.black@example.com"},
	}
}

// genre is a movie genre; IDs are short numeric strings, as in the Academy.
type genre struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// person is an entry of GET /people.
type person struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"createdAt"`
	UpdatedAt string `json:"updatedAt"`
}

// organization is an entry of GET /organizations.
type organization struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// catalog is the read-only data every user sees. It is built once by New
// and never changed, so it may be read without the lock.
type catalog struct {
	movies        []movie // the six default records
	genres        []genre
	people        []person
	organizations []organization
}

// newCatalog builds the default data, "created" on 2023-04-13.
func newCatalog() catalog {
	seedTime := time.Date(2023, time.April, 13, 17, 4, 47, 0, time.UTC)
	genres := []genre{
		{"1", "action"}, {"2", "adventure"}, {"3", "animation"}, {"4", "comedy"},
		{"5", "crime"}, {"6", "drama"}, {"7", "fantasy"}, {"8", "sci-fi"}, {"9", "thriller"},
	}
	pick := func(ids ...string) []genre {
		var out []genre
		for _, id := range ids {
			for _, g := range genres {
				if g.ID == id {
					out = append(out, g)
				}
			}
		}
		return out
	}
	mk := func(i int, id, name, director string, year int, desc string, genres []genre) movie {
		t := seedTime.Add(time.Duration(i) * time.Second)
		return movie{ID: id, Name: name, Description: desc, Director: director,
			ReleaseYear: year, Genres: genres, CreatedAt: t, UpdatedAt: t}
	}
	movies := []movie{
		mk(0, "4e8255bbb161", "The Matrix", "Lana Wachowski, Lilly Wachowski", 1999,
			"A hacker learns that his world is a simulation and joins the rebellion against its makers.", pick("1", "8")),
		mk(1, "9c0ad9ddaa01", "Inception", "Christopher Nolan", 2010,
			"A thief who steals secrets through shared dreams is asked to plant an idea instead.", pick("1", "8", "9")),
		mk(2, "0c841ade9610", "Iron Man", "Jon Favreau", 2008,
			"An industrialist builds a powered suit of armour to escape captivity and becomes a hero.", pick("1", "2", "8")),
		mk(3, "9115d5940e98", "The Godfather", "Francis Ford Coppola", 1972,
			"The ageing head of a crime family hands control of his empire to his reluctant son.", pick("5", "6")),
		mk(4, "fc3fb268a5c4", "Spirited Away", "Hayao Miyazaki", 2001,
			"A girl wanders into a world of spirits and must work in a bathhouse to free her parents.", pick("3", "7", "2")),
		mk(5, "2ecdb30b0d47", "Pulp Fiction", "Quentin Tarantino", 1994,
			"The lives of two hitmen, a boxer and a gangster's wife intertwine in Los Angeles.", pick("5", "9")),
	}
	stamp := seedTime.Format(timeLayout)
	p := func(id, name string) person { return person{ID: id, Name: name, CreatedAt: stamp, UpdatedAt: stamp} }
	return catalog{
		movies: movies,
		genres: genres,
		people: []person{
			p("5bfb3056c5e4", "Robert Downey Jr."),
			p("f841a38b77be", "Jon Favreau"),
			p("571e60abeb32", "Keanu Reeves"),
			p("4a81130443e1", "Carrie-Anne Moss"),
			p("f72211a79801", "Lana Wachowski"),
			p("d099bb3c34fe", "Lilly Wachowski"),
			p("8c92a89c6b99", "Leonardo DiCaprio"),
			p("347175807b76", "Christopher Nolan"),
			p("44c5b0f8755e", "Marlon Brando"),
			p("67b706c881b0", "Al Pacino"),
			p("30e4ab9c111d", "Francis Ford Coppola"),
			p("38bd225094ac", "Hayao Miyazaki"),
			p("ee7e20582137", "Quentin Tarantino"),
			p("20444b665e96", "Uma Thurman"),
			p("027145d94831", "Samuel L. Jackson"),
			p("d04c96a6f01d", "Gwyneth Paltrow"),
		},
		organizations: []organization{
			{"1c343f93b7e2", "Warner Bros. Pictures"},
			{"a5518b4722b5", "Legendary Pictures"},
			{"612856b03cf9", "Marvel Studios"},
			{"1b56cc065751", "Paramount Pictures"},
			{"c3e21bbb9dd7", "Studio Ghibli"},
			{"32d4b609be57", "Miramax"},
		},
	}
}

// genreByID finds a genre of the catalog.
func (c *catalog) genreByID(id string) (genre, bool) {
	for _, g := range c.genres {
		if g.ID == id {
			return g, true
		}
	}
	return genre{}, false
}

// defaultMovie finds a default record by ID.
func (c *catalog) defaultMovie(id string) (movie, bool) {
	for _, m := range c.movies {
		if m.ID == id {
			return m, true
		}
	}
	return movie{}, false
}
