package findings

import (
	"math"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Redaction markers replace what Redact removes. The type tells a reader what was there without
// revealing it.
const (
	RedactPrivateKey     = "private-key"
	RedactURLCredentials = "url-credentials"
	RedactJWT            = "jwt"
	RedactAWSAccessKey   = "aws-access-key"
	RedactAWSSecretKey   = "aws-secret-key"
	RedactGitHubToken    = "github-token"
	RedactGitLabToken    = "gitlab-token"
	RedactSlackToken     = "slack-token"
	RedactSlackWebhook   = "slack-webhook"
	RedactAtlassianToken = "atlassian-token"
	RedactJiraconnectKey = "jiraconnect-api-key"
	RedactOpenAIKey      = "openai-key"
	RedactGoogleAPIKey   = "google-api-key"
	RedactStripeKey      = "stripe-key"
	RedactBearerToken    = "bearer-token"
	RedactBasicAuth      = "basic-auth"
	RedactAuthorization  = "authorization"
	RedactPassword       = "password"
	RedactSecret         = "secret"
	RedactAPIKey         = "api-key"
	RedactToken          = "token"
	RedactCredential     = "credential"
	RedactSession        = "session"
	RedactHighEntropy    = "high-entropy"
	RedactEmail          = "email"
	RedactCardNumber     = "card-number"
)

// MaxRedactBytes bounds Redact's output (and the work it does). Longer text is cut at a whitespace
// boundary and ends with TruncatedMarker.
const MaxRedactBytes = 64 << 10

// TruncatedMarker ends text that Redact had to shorten. It is on its own line so that no rule
// can read it as the value of a preceding key or header.
const TruncatedMarker = "\n[TRUNCATED]"

// Marker returns the redaction marker for a type: [REDACTED:type].
func Marker(kind string) string { return "[REDACTED:" + kind + "]" }

// markerPattern matches exactly one marker. Rules that replace values leave a value alone when it
// already is a marker, which is what makes Redact idempotent and keeps the more specific type.
var markerPattern = regexp.MustCompile(`^\[REDACTED:[a-z0-9-]+\]$`)

// rule is one redaction step: a pattern whose matches are replaced, or (for PEM blocks, whose
// extent a single regular expression cannot find in linear time) a function over the whole text.
type rule struct {
	name string
	re   *regexp.Regexp
	// replace gets the submatch indexes of a match and returns its replacement; it may return the
	// match unchanged to decline.
	replace func(s string, m []int) string
	// apply, when set, is used instead of re and replace.
	apply func(s string) string
	// hints are literal substrings of which every match contains at least one (compared with
	// the lower-cased text when fold is set); nil means no prefilter.
	hints []string
	fold  bool
}

func (r rule) run(s string) string {
	if r.apply != nil {
		return r.apply(s)
	}
	return replaceAll(r, s)
}

// whole replaces the entire match with a typed marker.
func whole(kind string) func(string, []int) string {
	return func(string, []int) string { return Marker(kind) }
}

// Building blocks of the assignment rules. A key is followed by an optional closing quote (also
// backslash-escaped, for JSON inside strings), a separator (=, :, :=, =>) surrounded by spaces or
// tabs only — never a newline, so a rule cannot reach into the next line — and the value, which is
// double-quoted, single-quoted, escaped-double-quoted or bare.
const (
	keyClose   = `(\\?["']?)`
	separator  = `([ \t]*(?::=|=>|[:=])[ \t]*)`
	quotedVal  = `\\"((?:[^"\\\r\n]|\\[^"\r\n])*)\\"|"([^"\r\n]*)"|'([^'\r\n]*)'`
	bareVal    = `([^\s"'\x60,;&<>\\]+)`
	secretKeys = `password|passwd|passphrase|pwd|secret|secret[ _.\-]?key|api[ _.\-]?key|apikey|access[ _.\-]?key|private[ _.\-]?key|auth[ _.\-]?token|access[ _.\-]?token|refresh[ _.\-]?token|id[ _.\-]?token|token|credentials?|client[ _.\-]?secret|session[ _.\-]?(?:id|key|token)|cookie`
)

// Compiled once: regexps are immutable and safe for concurrent use. All are RE2 (package regexp),
// so matching is linear in the input whatever it contains.
var (
	rePEMHeader = regexp.MustCompile(`-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?(?:-----)?`)
	rePEMFooter = regexp.MustCompile(`-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----`)

	reURLCreds = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/@:\[\]"'<>]+:[^\s/@\[\]"'<>]+@`)

	reJWT = regexp.MustCompile(`eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)?`)

	reAWSAccessKey = regexp.MustCompile(`(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}`)
	reGitHub       = regexp.MustCompile(`(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})`)
	reGitLab       = regexp.MustCompile(`glpat-[A-Za-z0-9_\-]{20,}`)
	reSlackToken   = regexp.MustCompile(`(?:xoxe\.)?xox[a-z]-[A-Za-z0-9\-]{10,}|xapp-[0-9]-[A-Za-z0-9\-]{10,}`)
	reSlackHook    = regexp.MustCompile(`https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]+`)
	reAtlassian    = regexp.MustCompile(`AT[A-Z]TT[A-Za-z0-9_\-=]{20,}`)
	reJCK          = regexp.MustCompile(`jck_[A-Za-z0-9_\-]{16,}`)
	reOpenAI       = regexp.MustCompile(`\bsk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}`)
	reGoogleAPIKey = regexp.MustCompile(`AIza[0-9A-Za-z_\-]{35,}`)
	reStripe       = regexp.MustCompile(`\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}`)

	reAuthHeader = regexp.MustCompile(`(?i)((?:proxy-)?authorization` + keyClose + separator + `\\?["']?)(?:(bearer|basic|digest|token|negotiate|ntlm|apikey|aws4-hmac-sha256)[ \t]+)?([^\s"'\x60\\]+)`)
	reBearer     = regexp.MustCompile(`(?i)\b(bearer[ \t]+)([A-Za-z0-9\-._~+/]{16,}=*)`)

	reEmail = regexp.MustCompile(`[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?)*\.\p{L}{2,}`)
	reCard  = regexp.MustCompile(`\b[2-6](?:[ \-]?\d){12,18}\b`)

	reSecretAssign = regexp.MustCompile(`(?i)([a-z0-9_.\-]*(?:` + secretKeys + `))` + keyClose + separator + `(?:` + quotedVal + `|(?:\\?["'])?` + bareVal + `)`)
	reAnyAssign    = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_.\-]*)` + keyClose + separator + `(\\?["']?)([A-Za-z0-9+/_\-]{32,}={0,2})`)
	reUUID         = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// rules run in this order. Whole-token rules come first so that their specific types win; the
// header and assignment rules then see those markers as already-redacted values and keep them;
// e-mail and card numbers run before the generic assignments for the same reason.
var rules = []rule{
	{name: "private-key", hints: []string{"PRIVATE KEY"}, apply: redactPEM},
	{name: "url-credentials", hints: []string{"://"}, re: reURLCreds, replace: func(s string, m []int) string { return s[m[2]:m[3]] + Marker(RedactURLCredentials) + "@" }},
	{name: "jwt", hints: []string{"eyJ"}, re: reJWT, replace: whole(RedactJWT)},
	{name: "aws-access-key", hints: []string{"A3T", "AKIA", "ASIA", "ABIA", "ACCA"}, re: reAWSAccessKey, replace: whole(RedactAWSAccessKey)},
	{name: "github", hints: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}, re: reGitHub, replace: whole(RedactGitHubToken)},
	{name: "gitlab", hints: []string{"glpat-"}, re: reGitLab, replace: whole(RedactGitLabToken)},
	{name: "slack-webhook", hints: []string{"hooks.slack.com"}, re: reSlackHook, replace: whole(RedactSlackWebhook)},
	{name: "slack", hints: []string{"xox", "xapp-"}, re: reSlackToken, replace: whole(RedactSlackToken)},
	{name: "atlassian", hints: []string{"TT"}, re: reAtlassian, replace: whole(RedactAtlassianToken)},
	{name: "jiraconnect", hints: []string{"jck_"}, re: reJCK, replace: whole(RedactJiraconnectKey)},
	{name: "openai", hints: []string{"sk-"}, re: reOpenAI, replace: whole(RedactOpenAIKey)},
	{name: "google", hints: []string{"AIza"}, re: reGoogleAPIKey, replace: whole(RedactGoogleAPIKey)},
	{name: "stripe", hints: []string{"_live_", "_test_"}, re: reStripe, replace: whole(RedactStripeKey)},
	{name: "authorization-header", fold: true, hints: []string{"authorization"}, re: reAuthHeader, replace: replaceAuthHeader},
	{name: "bearer", fold: true, hints: []string{"bearer"}, re: reBearer, replace: func(s string, m []int) string { return s[m[2]:m[3]] + Marker(RedactBearerToken) }},
	{name: "email", hints: []string{"@"}, re: reEmail, replace: whole(RedactEmail)},
	{name: "card-number", re: reCard, replace: replaceCard},
	{name: "secret-assignment", fold: true, hints: []string{"pass", "pwd", "secret", "key", "token", "credential", "session", "cookie"}, re: reSecretAssign, replace: replaceSecretAssign},
	{name: "high-entropy-assignment", hints: []string{":", "="}, re: reAnyAssign, replace: replaceHighEntropy},
}

// Redact removes secrets and personal data from free text (finding excerpts and titles) before
// it leaves jiraconnect, replacing each with a typed marker such as [REDACTED:aws-access-key]. It
// is defensive, not a guarantee: it catches well-known shapes and obvious assignments.
//
// Caught:
//   - PEM private key blocks (RSA, EC, OpenSSH, PKCS#8, encrypted, PGP), also when the excerpt
//     ends before the END line;
//   - credentials in URLs (scheme://user:password@host);
//   - JWTs (and five-part JWEs);
//   - AWS access key ids (AKIA…, ASIA…), GitHub tokens (ghp_, gho_, ghu_, ghs_, ghr_,
//     github_pat_), GitLab personal tokens (glpat-), Slack tokens (xox?-, xapp-) and incoming
//     webhook URLs, Atlassian API tokens (ATATT…, ATCTT…), jiraconnect API keys (jck_…),
//     OpenAI-style keys (sk-…), Google API keys (AIza…), Stripe keys (sk_live_…);
//   - Authorization / Proxy-Authorization header values (the scheme is kept: Bearer, Basic, …)
//     and "Bearer <token>" anywhere;
//   - values assigned to secret-looking keys — password, passwd, pwd, secret, *_key such as
//     api_key or aws_secret_access_key, token, *_token, credentials, client_secret, session ids,
//     cookie — in key=value, key: value, "key": "value", key := value and key => value forms,
//     quoted or bare; the key name is kept;
//   - long (32+ characters) high-entropy hex or base64 values assigned to any key (UUIDs
//     excepted, since finding and scan ids are UUIDs);
//   - e-mail addresses (including internationalized ones) and payment card numbers (13–19
//     digits starting with 2–6, the major networks' ranges, passing the Luhn check, with or
//     without spaces or dashes).
//
// Not caught: secrets without a recognisable shape or key (a password mentioned in prose,
// "the password is hunter2"), keys whose value spans lines, secrets split across lines or
// encoded (base64 of a token), tokens of services not listed above, high-entropy strings that
// are not assigned to a key, secrets in a truncated PEM header, names, phone numbers, postal
// addresses, IP addresses and other personal data without a fixed shape, quoted or IP-literal
// e-mail forms, and anything in a language the patterns do not anticipate. False positives are
// accepted: a git commit hash assigned to a key is redacted like a secret would be.
//
// Properties: Redact never panics; its output is valid UTF-8 (invalid bytes become U+FFFD), at
// most MaxRedactBytes long, and idempotent — Redact(Redact(s)) == Redact(s) — so text can be
// redacted at every boundary it crosses without drifting: the rules are applied repeatedly until
// nothing changes (one extra pass in practice, at most maxPasses), and the truncation is itself
// followed by redaction. Every pattern is RE2 and PEM blocks are delimited by a linear scan, so
// the running time is linear in the capped input (tens of milliseconds for a 16 KiB excerpt,
// a few hundred for adversarial 64 KiB input on one core).
func Redact(s string) string {
	if len(s) > MaxRedactBytes {
		s = cutForTruncation(s, MaxRedactBytes)
	}
	// Control characters become spaces before looking for secrets: the issue renderer drops
	// them, which would otherwise join two harmless halves into a token after redaction has run.
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
			return ' '
		}
		return r
	}, s)
	s = redactFixpoint(s)
	// Markers can be longer than what they replace; cut again, then redact the new end (a cut
	// can leave a key without its value, or a header scheme without its token).
	for i := 0; len(s) > MaxRedactBytes && i < 4; i++ {
		s = redactFixpoint(cutForTruncation(s, MaxRedactBytes-1024))
	}
	if len(s) > MaxRedactBytes {
		// Unreachable in practice (the loop above shrinks by a kilobyte per round); keep the
		// bound unconditional without risking a half marker.
		s = TruncatedMarker[1:]
	}
	return s
}

// maxPasses bounds the fixed-point iteration. One pass almost always suffices; a second is needed
// only when a replacement creates a word boundary that a \b rule then sees.
const maxPasses = 8

func redactFixpoint(s string) string {
	for range maxPasses {
		next := redactOnce(s)
		if next == s {
			return s
		}
		s = next
	}
	return s
}

func redactOnce(s string) string {
	folded, haveFolded := "", false
	for _, r := range rules {
		if r.hints != nil {
			hay := s
			if r.fold {
				if !haveFolded {
					folded, haveFolded = foldCase(s), true
				}
				hay = folded
			}
			if !containsAny(hay, r.hints) {
				continue
			}
		}
		if next := r.run(s); next != s {
			s, haveFolded = next, false
		}
	}
	return s
}

// foldCase lower-cases s the way (?i) matching treats ASCII letters: besides their upper-case
// forms, the Kelvin sign matches k (strings.ToLower maps it) and the long s (ſ) matches s.
func foldCase(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "\u017f", "s")
}

// containsAny reports whether s contains one of the literal hints. The hints are substrings
// every match of a rule contains, so a rule whose hints are all absent cannot match and its
// (comparatively slow) regular expression is skipped.
func containsAny(s string, hints []string) bool {
	for _, h := range hints {
		if strings.Contains(s, h) {
			return true
		}
	}
	return false
}

// replaceAll applies one rule to every non-overlapping match, left to right.
func replaceAll(r rule, s string) string {
	matches := r.re.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for _, m := range matches {
		b.WriteString(s[last:m[0]])
		b.WriteString(r.replace(s, m))
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// cutForTruncation shortens s to at most max bytes including TruncatedMarker. It cuts at the last
// whitespace before the limit, dropping the partial token there: half a token is still a secret
// but would no longer match its pattern.
func cutForTruncation(s string, max int) string {
	limit := max - len(TruncatedMarker)
	if limit < 0 {
		limit = 0
	}
	if limit > len(s) {
		limit = len(s)
	}
	for limit > 0 && !utf8.RuneStart(s[limit]) {
		limit--
	}
	head := s[:limit]
	if i := strings.LastIndexFunc(head, unicode.IsSpace); i >= 0 {
		head = head[:i]
	} else {
		head = ""
	}
	return strings.TrimRightFunc(head, unicode.IsSpace) + TruncatedMarker
}

// group returns submatch i of m, or "" when it did not participate.
func group(s string, m []int, i int) (string, bool) {
	if m[2*i] < 0 {
		return "", false
	}
	return s[m[2*i]:m[2*i+1]], true
}

func replaceAuthHeader(s string, m []int) string {
	prefix, _ := group(s, m, 1)
	scheme, hasScheme := group(s, m, 4)
	value, _ := group(s, m, 5)
	if markerPattern.MatchString(value) {
		return s[m[0]:m[1]]
	}
	kind := RedactAuthorization
	switch strings.ToLower(scheme) {
	case "bearer":
		kind = RedactBearerToken
	case "basic":
		kind = RedactBasicAuth
	}
	if hasScheme {
		return prefix + s[m[8]:m[10]] + Marker(kind)
	}
	return prefix + Marker(kind)
}

// replaceSecretAssign keeps the key, its quotes and the separator, and replaces the value.
func replaceSecretAssign(s string, m []int) string {
	key, _ := group(s, m, 1)
	// Groups: 1 key, 2 key close, 3 separator, 4 escaped-quoted, 5 double-quoted,
	// 6 single-quoted, 7 bare.
	for g := 4; g <= 7; g++ {
		v, ok := group(s, m, g)
		if !ok {
			continue
		}
		if v == "" || markerPattern.MatchString(v) {
			return s[m[0]:m[1]]
		}
		return s[m[0]:m[2*g]] + Marker(secretKind(key)) + s[m[2*g+1]:m[1]]
	}
	return s[m[0]:m[1]]
}

// secretKind names the marker type after the key, so a reader knows a password was there.
func secretKind(key string) string {
	k := foldCase(key)
	has := func(subs ...string) bool {
		for _, sub := range subs {
			if !strings.Contains(k, sub) {
				return false
			}
		}
		return true
	}
	switch {
	case has("aws", "secret"), has("secret", "access", "key"):
		return RedactAWSSecretKey
	case has("pass"), has("pwd"):
		return RedactPassword
	case has("private"):
		return RedactPrivateKey
	case has("api"):
		return RedactAPIKey
	case has("session"), has("cookie"):
		return RedactSession
	case has("token"):
		return RedactToken
	case has("credential"):
		return RedactCredential
	}
	return RedactSecret
}

// replaceHighEntropy redacts a long value assigned to any key when it looks random: enough
// distinct symbols, letters and digits mixed, and not a UUID.
func replaceHighEntropy(s string, m []int) string {
	v, _ := group(s, m, 5)
	if reUUID.MatchString(v) || !highEntropy(v) {
		return s[m[0]:m[1]]
	}
	return s[m[0]:m[10]] + Marker(RedactHighEntropy) + s[m[11]:m[1]]
}

// highEntropy reports whether v (already known to be 32+ base64/hex characters) looks like key
// material: it mixes letters and digits and its Shannon entropy per character is high for its
// alphabet (hex strings max out at 4 bits, base64 at 6).
func highEntropy(v string) bool {
	v = strings.TrimRight(v, "=")
	var letters, digits int
	hex := true
	counts := map[rune]int{}
	for _, r := range v {
		counts[r]++
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F':
			letters++
		case unicode.IsLetter(r):
			letters++
			hex = false
		default:
			hex = false
		}
	}
	if letters == 0 || digits == 0 {
		return false
	}
	var h float64
	n := float64(len(v))
	for _, c := range counts {
		p := float64(c) / n
		h -= p * math.Log2(p)
	}
	if hex {
		return h >= 3.0
	}
	return h >= 3.5
}

// replaceCard redacts digit runs that are plausible payment card numbers: 13–19 digits passing
// the Luhn check. Other long numbers (order ids, timestamps) mostly fail the check and stay.
func replaceCard(s string, m []int) string {
	match := s[m[0]:m[1]]
	digits := make([]int, 0, 19)
	for _, r := range match {
		if r >= '0' && r <= '9' {
			digits = append(digits, int(r-'0'))
		}
	}
	if len(digits) < 13 || len(digits) > 19 || !luhn(digits) {
		return match
	}
	return Marker(RedactCardNumber)
}

func luhn(d []int) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := d[i]
		if (len(d)-1-i)%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// pemWindow bounds how far after a header Redact looks for the block's END line. Private keys
// are at most a few kilobytes (PGP key blocks somewhat more), so an END line further away belongs
// to something else.
const pemWindow = 32 << 10

// redactPEM replaces each private key block with a marker: from the BEGIN header to its END line,
// or — when the END line is missing, as in a truncated excerpt — through the following lines that
// look like key material (base64 lines, "Proc-Type:"-style headers), with real or JSON-escaped
// (\n) line breaks. Footers are located once for the whole text, so the work is linear however
// many headers there are.
func redactPEM(s string) string {
	headers := rePEMHeader.FindAllStringIndex(s, -1)
	if headers == nil {
		return s
	}
	footers := rePEMFooter.FindAllStringIndex(s, -1)
	var b strings.Builder
	b.Grow(len(s))
	last, f := 0, 0
	for _, h := range headers {
		if h[0] < last {
			continue // inside a block already replaced
		}
		for f < len(footers) && footers[f][0] < h[1] {
			f++
		}
		end := -1
		if f < len(footers) && footers[f][0]-h[1] <= pemWindow {
			end = footers[f][1]
		} else {
			end = pemBodyEnd(s, h[1])
		}
		b.WriteString(s[last:h[0]])
		b.WriteString(Marker(RedactPrivateKey))
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// pemBodyEnd returns where the key material after an unterminated header ends. A line counts as
// key material when all of it is base64 or it is a "Name: value" header line; the line break
// before a line that is not is left in place.
func pemBodyEnd(s string, p int) int {
	for {
		q := skipBlanks(s, p)
		n := lineBreak(s, q)
		if n == 0 {
			return p
		}
		q = skipBlanks(s, q+n)
		e := q
		for e < len(s) && isBase64Byte(s[e]) {
			e++
		}
		if e > q && (lineEnds(s, skipBlanks(s, e))) {
			p = e
			continue
		}
		if e := pemHeaderLine(s, q); e > q {
			p = e
			continue
		}
		return p
	}
}

func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// lineBreak returns the length of the line break at i: a real one (LF, CRLF) or a JSON-escaped
// one (\n, \r\n) as found in excerpts that quote JSON; 0 when there is none.
func lineBreak(s string, i int) int {
	for _, br := range [...]string{"\r\n", "\n", `\r\n`, `\n`} {
		if strings.HasPrefix(s[i:], br) {
			return len(br)
		}
	}
	return 0
}

// lineEnds reports whether a line of key material may end at i: at the end of the text, at a
// line break, or at the quote closing the string that holds the key.
func lineEnds(s string, i int) bool {
	if i == len(s) || lineBreak(s, i) > 0 {
		return true
	}
	switch s[i] {
	case '"', '\'', '`':
		return true
	case '\\':
		return strings.HasPrefix(s[i:], `\"`)
	}
	return false
}

func isBase64Byte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

// pemHeaderLine returns the end of a "Proc-Type: 4,ENCRYPTED" style line starting at i, or i.
func pemHeaderLine(s string, i int) int {
	j := i
	for j < len(s) && (s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] == '-') {
		j++
	}
	if j == i || j >= len(s) || s[j] != ':' {
		return i
	}
	for j < len(s) && s[j] != '\n' && s[j] != '\r' && lineBreak(s, j) == 0 {
		j++
	}
	return j
}
