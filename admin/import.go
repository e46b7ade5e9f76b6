package admin

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/audit"
	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/keyimport"
)

// maxImportBytes bounds an import body: about 300,000 lines of legacy keys.
const maxImportBytes = 32 << 20

// importKeys handles POST /admin/keys/import[?dry_run=true]: a JSON Lines body
// (application/x-ndjson), a {"keys":[…]} document (application/json) or CSV (text/csv), imported
// as `keys import` does (docs/reference.md §2.1). The answer is the summary; it never holds a key.
func (h *Handler) importKeys(w http.ResponseWriter, r *http.Request) error {
	dryRun := false
	if v := r.URL.Query().Get("dry_run"); v != "" {
		var err error
		if dryRun, err = strconv.ParseBool(v); err != nil {
			return badRequest(`"dry_run" must be true or false.`, fmt.Errorf("dry_run %q", v))
		}
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var format keyimport.Format
	switch mt {
	case "application/x-ndjson", "application/jsonl", "application/json-lines":
		format = keyimport.JSONLines
	case "application/json":
		format = keyimport.Document
	case "text/csv":
		format = keyimport.CSV
	default:
		e := httperr.New(http.StatusUnsupportedMediaType, httperr.BadRequest,
			"Send the keys as application/x-ndjson (JSON Lines), application/json ({\"keys\":[…]}) or text/csv.")
		return e
	}
	body := http.MaxBytesReader(w, r.Body, maxImportBytes)
	sum, err := keyimport.Run(r.Context(), h.store, body, format, dryRun)
	var fe *keyimport.FileError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return httperr.Wrap(http.StatusRequestEntityTooLarge, httperr.PayloadTooLarge,
			fmt.Sprintf("The import body exceeds %d MiB; split the file.", maxImportBytes>>20), err)
	case errors.As(err, &fe):
		return badRequest(fe.Error()+".", err)
	case err != nil:
		return err
	}
	h.log.Info("api keys imported", append(sum.AuditFields(), zap.Bool("dry_run", dryRun))...)
	if !dryRun {
		h.audit.Record(audit.KeyImported, r.RemoteAddr, sum.AuditFields()...)
	}
	writeJSON(w, http.StatusOK, sum)
	return nil
}
