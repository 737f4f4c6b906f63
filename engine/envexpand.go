package engine

import (
	"fmt"
	"regexp"
	"strings"
)

// expandVars replaces ${VAR} and ${VAR:-default} in src. Inside TOML
// strings the value is escaped for the kind of string it lands in; "$${"
// stands for a literal "${". Outside strings (`max_subscriptions =
// ${MAX:-50}`) the value must be a TOML number or boolean and is inserted
// as is. Comments are left alone. Every unset variable without a default
// is reported with its line.
func expandVars(src []byte, lookup func(string) (string, bool)) ([]byte, []lineError) {
	var (
		out   strings.Builder
		errs  []lineError
		line  = 1
		s     = string(src)
		delim string // "" outside strings, else the closing delimiter
		start int    // where the current string's content starts in out
	)
	out.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if delim == "" {
			switch {
			case c == '#':
				j := strings.IndexByte(s[i:], '\n')
				if j < 0 {
					j = len(s) - i
				}
				out.WriteString(s[i : i+j])
				i += j
				continue
			case strings.HasPrefix(s[i:], `"""`), strings.HasPrefix(s[i:], `'''`):
				delim = s[i : i+3]
				out.WriteString(delim)
				i += 3
				start = out.Len()
				continue
			case c == '"' || c == '\'':
				delim = string(c)
				out.WriteByte(c)
				i++
				start = out.Len()
				continue
			case strings.HasPrefix(s[i:], "${"):
				n, val, err := substitute(s[i:], lookup)
				if err == "" && !scalarPattern.MatchString(val) {
					// The value is not quoted in the message: it may be a secret.
					err = fmt.Sprintf("%s outside quotes must be a number or true/false; quote it for a string", s[i:i+n])
				}
				if err != "" {
					errs = append(errs, lineError{line, err})
				}
				out.WriteString(val)
				i += n
				continue
			}
			if c == '\n' {
				line++
			}
			out.WriteByte(c)
			i++
			continue
		}
		// Inside a string.
		basic := delim[0] == '"'
		switch {
		case basic && c == '\\' && i+1 < len(s):
			out.WriteString(s[i : i+2])
			if s[i+1] == '\n' {
				line++
			}
			i += 2
			continue
		case strings.HasPrefix(s[i:], delim):
			out.WriteString(delim)
			i += len(delim)
			delim = ""
			continue
		case strings.HasPrefix(s[i:], "$${"):
			out.WriteString("${")
			i += 3
			continue
		case strings.HasPrefix(s[i:], "${"):
			n, val, msg := substitute(s[i:], lookup)
			if msg != "" {
				errs = append(errs, lineError{line, msg})
			}
			esc, err := escapeFor(delim, val, out.Len() == start)
			if err != nil {
				errs = append(errs, lineError{line, fmt.Sprintf("%s: %v", s[i:i+n], err)})
			}
			out.WriteString(esc)
			i += n
			continue
		}
		if c == '\n' {
			line++
		}
		out.WriteByte(c)
		i++
	}
	return []byte(out.String()), errs
}

// scalarPattern matches the values allowed for ${VAR} outside quotes.
var scalarPattern = regexp.MustCompile(`^([+-]?[0-9][0-9_]*(\.[0-9_]+)?([eE][+-]?[0-9]+)?|true|false)$`)

// substitute resolves the reference at the start of s ("${NAME}" or
// "${NAME:-default}"). It returns how many bytes the reference spans, the
// value, and a message when the reference is invalid or unset.
func substitute(s string, lookup func(string) (string, bool)) (int, string, string) {
	end := strings.IndexAny(s, "}\n")
	if end < 0 || s[end] != '}' {
		return len("${"), "", "unterminated ${"
	}
	expr := s[2:end]
	name, def, hasDef := strings.Cut(expr, ":-")
	val, ok := lookup(name)
	switch {
	case !validVarName(name):
		return end + 1, "", fmt.Sprintf("invalid variable reference ${%s}", expr)
	case !ok && !hasDef:
		return end + 1, "", fmt.Sprintf("environment variable %s is not set (use ${%s:-default} for a default)", name, name)
	case !ok || (val == "" && hasDef):
		val = def
	}
	return end + 1, val, ""
}

func validVarName(n string) bool {
	if n == "" {
		return false
	}
	for i, r := range n {
		if r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9' {
			continue
		}
		return false
	}
	return true
}

// escapeFor returns v written for the inside of a string closed by delim;
// atStart tells that v starts the string's content. Basic strings escape
// what they must. Literal strings cannot escape: a value that would end
// them (in a multi-line one, that starts or ends with a quote), hold a
// control character (other than tab, and newline in a multi-line one) or
// lose a newline that starts a multi-line one (TOML trims it) is refused.
// Errors never quote v, which may be a secret.
func escapeFor(delim, v string, atStart bool) (string, error) {
	switch delim {
	case `"`, `"""`:
		var b strings.Builder
		for _, r := range v {
			switch {
			case r == '"' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\t':
				b.WriteString(`\t`)
			case r == '\r':
				b.WriteString(`\r`)
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, `\u%04X`, r)
			default:
				b.WriteRune(r)
			}
		}
		return b.String(), nil
	default:
		bad := strings.Contains(v, delim)
		if delim == "'''" {
			// A quote at either end could make three with the text around.
			bad = bad || strings.HasPrefix(v, "'") || strings.HasSuffix(v, "'") || atStart && strings.HasPrefix(v, "\n")
		}
		for _, r := range v {
			if r < 0x20 && r != '\t' && (r != '\n' || delim == "'") || r == 0x7f {
				bad = true
			}
		}
		if bad {
			return "", fmt.Errorf("value cannot be written inside a %s string; use a \"basic\" string", delim)
		}
		return v, nil
	}
}
