package admin

import (
	"net/http"

	"github.com/gorilla/mux"
)

// routes builds the router: every route lives in one subrouter behind requireToken, and
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

	// Not PathPrefix("/admin").Subrouter(): routes inheriting a prefix matcher lose the method
	// mismatch of their siblings and answer 404 instead of 405 (gorilla/mux issue 751).
	api := r.NewRoute().Subrouter()
	api.Use(h.requireToken)

	api.Path("/admin/keys").Methods(http.MethodPost).Handler(h.handle(h.createKey))
	api.Path("/admin/keys").Methods(http.MethodGet).Handler(h.handle(h.listKeys))
	api.Path("/admin/keys/import").Methods(http.MethodPost).Handler(h.handle(h.importKeys))
	api.Path("/admin/keys/{id}").Methods(http.MethodDelete).Handler(h.handle(h.deleteKey))
	api.Path("/admin/users").Methods(http.MethodGet).Handler(h.handle(h.listUsers))

	api.Path("/admin/connections").Methods(http.MethodGet).Handler(h.handle(h.listConnections))
	api.Path("/admin/connections/{user}").Methods(http.MethodGet).Handler(h.handle(h.showConnection))
	api.Path("/admin/connections/{user}").Methods(http.MethodDelete).Handler(h.handle(h.revokeConnection))
	api.Path("/admin/connections/{user}/authorize").Methods(http.MethodPost).Handler(h.handle(h.authorize))
	return r
}
