package dashboard

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	pearldjs "github.com/pearld/pearld/sdk/js"
)

//go:embed static
var static embed.FS

// Patterns are the http.ServeMux patterns to mount Handler at: the page
// at the root only, its assets under /dashboard/. A catch-all "GET /"
// would conflict with method-less patterns of the same listener such as
// the webhook's "/webhook/event", and would answer paths that are not the
// dashboard's.
var Patterns = []string{"GET /{$}", "GET /dashboard/"}

// Config is what the page needs to know about the server.
type Config struct {
	// HubURL is the WebSocket URL the page connects to, e.g.
	// "wss://pearl.example.com/ws/realtime". Default: built in the browser
	// from HubPort and the host the page was loaded from.
	HubURL string
	// HubPort is the hub's port on the page's host, used when HubURL is
	// empty. Default 3446.
	HubPort int
	// APIBase is the REST API's base URL. Default: the hub's origin.
	APIBase string
	// Version is shown in the page's header.
	Version string
}

// pageConfig is the JSON the page reads from its #pearld-config element.
type pageConfig struct {
	HubURL  string `json:"hubUrl,omitempty"`
	HubPort int    `json:"hubPort,omitempty"`
	HubPath string `json:"hubPath"`
	APIBase string `json:"apiBase,omitempty"`
	Version string `json:"version"`
}

// Handler returns the handler of Patterns: the page at "/", its scripts
// and styles under /dashboard/ and the browser client under
// /dashboard/client/. It fails only when cfg is invalid.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.HubPort == 0 {
		cfg.HubPort = 3446
	}
	if cfg.HubPort < 1 || cfg.HubPort > 65535 {
		return nil, fmt.Errorf("dashboard: hub port %d is out of range", cfg.HubPort)
	}
	for name, u := range map[string]string{"hub URL": cfg.HubURL, "API base": cfg.APIBase} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || p.Host == "" || !(p.Scheme == "ws" || p.Scheme == "wss" || p.Scheme == "http" || p.Scheme == "https") {
			return nil, fmt.Errorf("dashboard: %s %q is not an absolute ws, wss, http or https URL", name, u)
		}
	}
	assets, err := fs.Sub(static, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	page, err := fs.ReadFile(assets, "index.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	tmpl, err := template.New("index.html").Parse(string(page))
	if err != nil {
		return nil, fmt.Errorf("dashboard: parsing the page: %w", err)
	}
	h := &handler{cfg: cfg, tmpl: tmpl, page: pageConfig{HubURL: cfg.HubURL, HubPort: cfg.HubPort, HubPath: "/ws/realtime", APIBase: cfg.APIBase, Version: cfg.Version}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.serveIndex)
	mux.Handle("GET /dashboard/client/", assetServer("/dashboard/client/", pearldjs.Dist()))
	mux.Handle("GET /dashboard/", assetServer("/dashboard/", assets))
	return mux, nil
}

type handler struct {
	cfg  Config
	tmpl *template.Template
	page pageConfig
}

// serveIndex renders the page with its configuration and a content
// security policy that lets it talk to the hub only.
func (h *handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	// html/template encodes Config as JSON, escaped for the
	// <script type="application/json"> element it goes in.
	err := h.tmpl.Execute(&b, map[string]any{"Config": h.page, "Version": h.cfg.Version})
	if err != nil {
		http.Error(w, "rendering the dashboard failed", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Security-Policy", h.csp(r))
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	_, _ = w.Write(b.Bytes())
}

// csp allows scripts and styles from the page's origin only, and
// connections to the hub and the REST API only.
func (h *handler) csp(r *http.Request) string {
	connect := []string{"'self'"}
	if h.cfg.HubURL != "" {
		connect = append(connect, origin(h.cfg.HubURL))
	} else {
		host := r.Host
		if hn, _, err := net.SplitHostPort(host); err == nil {
			host = hn
		}
		host = strings.Trim(host, "[]")
		if hostPattern.MatchString(host) {
			hp := net.JoinHostPort(host, strconv.Itoa(h.cfg.HubPort))
			connect = append(connect, "ws://"+hp, "wss://"+hp, "http://"+hp, "https://"+hp)
		}
	}
	if h.cfg.APIBase != "" {
		connect = append(connect, origin(h.cfg.APIBase))
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src " + strings.Join(connect, " ") + "; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// hostPattern is what a Host header's host must look like to go into
// the policy: a name, an IPv4 or an IPv6 address.
var hostPattern = regexp.MustCompile(`^[A-Za-z0-9.:-]{1,253}$`)

// origin returns scheme://host of an absolute URL validated by Handler.
func origin(u string) string {
	p, _ := url.Parse(u)
	return p.Scheme + "://" + p.Host
}

// assetServer serves the files of fsys under prefix, with revalidation
// so that an upgraded pearld never leaves a stale script in a browser.
func assetServer(prefix string, fsys fs.FS) http.Handler {
	files := http.StripPrefix(prefix, http.FileServerFS(fsys))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || strings.HasSuffix(r.URL.Path, "/index.html") {
			http.NotFound(w, r) // no directory listings; the page is served at / only
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
