package admin

import "testing"

func TestCheckToken(t *testing.T) {
	h := New(nil, nil, nil, Options{Token: "s3cret"})
	tests := []struct {
		values []string
		want   error
	}{
		{nil, errNoCredentials},
		{[]string{"Bearer s3cret", "Bearer s3cret"}, errManyHeaders},
		{[]string{"Basic s3cret"}, errNotBearer},
		{[]string{"Bearer s3cre"}, errWrongToken},
		{[]string{"Bearer s3crets"}, errWrongToken},
		{[]string{"Bearer S3CRET"}, errWrongToken},
		{[]string{"Bearer s3cret"}, nil},
	}
	for _, tt := range tests {
		if got := h.checkToken(tt.values); got != tt.want {
			t.Errorf("checkToken(%q) = %v, want %v", tt.values, got, tt.want)
		}
	}
}

func TestPlainTemplate(t *testing.T) {
	tests := map[string]string{
		"/admin/keys":                         "/admin/keys",
		"/admin/keys/{id}":                    "/admin/keys/{id}",
		"/admin/keys/{id:[0-9a-f]{16}}":       "/admin/keys/{id}",
		"/admin/connections/{user:[^/]+}/x":   "/admin/connections/{user}/x",
		"/admin/{a:[a-z]+}/{b:(?:x|y){1,2}}/": "/admin/{a}/{b}/",
	}
	for in, want := range tests {
		if got := plainTemplate(in); got != want {
			t.Errorf("plainTemplate(%q) = %q, want %q", in, got, want)
		}
	}
}
