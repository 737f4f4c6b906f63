package engine

import (
	"fmt"
	"strings"
)

// expandVars replaces ${VAR} and ${VAR:-default} inside the TOML string
// values of src; comments and keys are left alone. "$${" stands for a
// literal "${". The substituted text is escaped for the kind of string it
// lands in. Every unset variable without a default is reported with its
// line.
func expandVars(src []byte, lookup func(string) (string, bool)) ([]byte, []lineError) {
	var (
		out   strings.Builder
		errs  []lineError
		line  = 1
		s     = string(src)
		delim string // "" outside strings, else the closing delimiter
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
				continue
			case c == '"' || c == '\'':
				delim = string(c)
				out.WriteByte(c)
				i++
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
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				errs = append(errs, lineError{line, "unterminated ${ in string"})
				out.WriteString(s[i:])
				i = len(s)
				continue
			}
			expr := s[i+2 : i+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			val, ok := lookup(name)
			switch {
			case !validVarName(name):
				errs = append(errs, lineError{line, fmt.Sprintf("invalid variable reference ${%s}", expr)})
			case !ok && !hasDef:
				errs = append(errs, lineError{line, fmt.Sprintf("environment variable %s is not set (use ${%s:-default} for a default)", name, name)})
			case !ok || (val == "" && hasDef):
				val = def
			}
			esc, err := escapeFor(delim, val)
			if err != nil {
				errs = append(errs, lineError{line, fmt.Sprintf("variable %s: %v", name, err)})
			}
			out.WriteString(esc)
			i += end + 1
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

func escapeFor(delim, v string) (string, error) {
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
		if strings.Contains(v, delim) || strings.ContainsAny(v, "\n\r") && delim == "'" {
			return "", fmt.Errorf("value cannot be written inside a %s string; use a \"basic\" string", delim)
		}
		return v, nil
	}
}
