// Package web holds the browser pages of a node: an index, a publish page
// (camera to WHIP) and a watch page (WHEP player), embedded in the binary.
// It serves files only; WHIP and WHEP themselves belong to the node.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed pages static
var files embed.FS

// contentTypes covers every extension under pages/ and static/; the table is
// ours so the answer does not depend on the host's mime.types.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
}

// contentSecurityPolicy allows the pages only their own scripts and styles.
// connect-src stays open because the `server` parameter may name another
// origin for WHIP and WHEP.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; media-src 'self' blob:; connect-src *; base-uri 'none'; form-action 'self'"

// asset is one embedded file, ready to serve.
type asset struct {
	name        string
	body        []byte
	contentType string
	etag        string
}

// Handler serves, for GET and HEAD:
//
//	/             the index page
//	/publish      the publish page
//	/watch        the watch page
//	/static/...   the scripts and the style sheet of the pages
//
// Any other path is a 404; another method on a page is a 405. Responses carry
// an ETag and "Cache-Control: no-cache", so browsers revalidate cheaply and
// never run stale scripts after an upgrade.
func Handler() http.Handler {
	mux := http.NewServeMux()
	for pattern, name := range map[string]string{
		"GET /{$}":     "pages/index.html",
		"GET /publish": "pages/publish.html",
		"GET /watch":   "pages/watch.html",
	} {
		mux.Handle(pattern, serveAsset(mustLoad(name), true))
	}
	static := make(map[string]http.Handler)
	err := fs.WalkDir(files, "static", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			static[name] = serveAsset(mustLoad(name), false)
		}
		return err
	})
	if err != nil {
		panic("web: walk embedded files: " + err.Error())
	}
	mux.HandleFunc("GET /static/{file...}", func(w http.ResponseWriter, r *http.Request) {
		h, ok := static[path.Join("static", r.PathValue("file"))]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	return mux
}

// mustLoad reads an embedded file. The files are part of the binary, so a
// failure is a programming error.
func mustLoad(name string) asset {
	body, err := files.ReadFile(name)
	if err != nil {
		panic("web: read embedded file: " + err.Error())
	}
	contentType, ok := contentTypes[path.Ext(name)]
	if !ok {
		contentType = "application/octet-stream"
	}
	sum := sha256.Sum256(body)
	return asset{
		name:        name,
		body:        body,
		contentType: contentType,
		etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
	}
}

func serveAsset(a asset, page bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if page {
			h.Set("Content-Security-Policy", contentSecurityPolicy)
			// The query may hold a token: never send it on as a Referer.
			h.Set("Referrer-Policy", "no-referrer")
		}
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
	})
}
