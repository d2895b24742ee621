package streammanager

import (
	"embed"
	"net/http"
	"path"
)

//go:embed dashboard
var dashboardFiles embed.FS

// dashboardCSP allows the dashboard only its own script and the pages' style sheet.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'"

// dashboardHandler serves the dashboard: GET / (index.html) and GET /dashboard/{file}.
func dashboardHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "dashboard/index.html"
		ctype := "text/html; charset=utf-8"
		if r.URL.Path != "/" {
			name = path.Clean(r.URL.Path[1:])
			switch path.Ext(name) {
			case ".js":
				ctype = "text/javascript; charset=utf-8"
			case ".css":
				ctype = "text/css; charset=utf-8"
			default:
				http.NotFound(w, r)
				return
			}
		}
		data, err := dashboardFiles.ReadFile(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(data)
	})
}
