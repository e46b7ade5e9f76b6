package admin

import (
	"net/http"

	"github.com/gorilla/mux"
)

// routes builds the router: every route lives in the /admin subrouter behind requireToken, and
// the router's own 404 and 405 answers sit behind it too, so a caller without the token learns
// nothing, not even which paths exist. docs/admin-api.yaml must list exactly these routes (a test
// checks it).
func (h *Handler) routes() *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = h.requireToken(h.handle(func(http.ResponseWriter, *http.Request) error {
		return notFound("No such admin resource.", nil)
	}))
	r.MethodNotAllowedHandler = h.requireToken(h.handle(func(w http.ResponseWriter, req *http.Request) error {
		return methodNotAllowed(r, req)
	}))

	api := r.PathPrefix("/admin").Subrouter()
	api.Use(h.requireToken)

	api.Path("/keys").Methods(http.MethodPost).Handler(h.handle(h.createKey))
	api.Path("/keys").Methods(http.MethodGet).Handler(h.handle(h.listKeys))
	api.Path("/keys/{id}").Methods(http.MethodDelete).Handler(h.handle(h.deleteKey))

	api.Path("/connections").Methods(http.MethodGet).Handler(h.handle(h.listConnections))
	api.Path("/connections/{user}").Methods(http.MethodGet).Handler(h.handle(h.showConnection))
	api.Path("/connections/{user}").Methods(http.MethodDelete).Handler(h.handle(h.revokeConnection))
	api.Path("/connections/{user}/authorize").Methods(http.MethodPost).Handler(h.handle(h.authorize))
	return r
}
