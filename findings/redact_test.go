package findings

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// Sample secrets. They are built by concatenation so that this file itself does not trip secret
// scanners, and none of them is a real credential.
var (
	sampleAWSKeyID  = "AKIA" + "IOSFODNN7EXAMPLE"
	sampleAWSSecret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
	sampleGHP       = "ghp_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
	sampleGHPat     = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ"
	sampleGHS       = "ghs_" + "16C7e42F292c6912E7710c838347Ae178B4a"
	sampleGHO       = "gho_" + "16C7e42F292c6912E7710c838347Ae178B4a"
	sampleSlack     = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
	sampleSlackUser = "xoxp-" + "123456789012-123456789012-123456789012-0123456789abcdef0123456789abcdef"
	sampleAtlassian = "ATATT3" + "xFfGF0pogUFVOH0_AjBEA8LJcnOJx_Ki4yl_PYkv-LwEBQQp3r37KZYnKm8IGQ-KKXDxCl7qnz=ABCD1234"
	sampleJCK       = "jck_" + "q8Vb1k2l3m4n5o6p7q8r9s0t1u2v3w4x5y6z7A8B9C0"
	sampleJWT       = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ" + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	samplePEM       = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw\n" +
		"7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFc\n-----END RSA PRIVATE KEY-----"
	sampleGoogle = "AIza" + "SyD-abcdefghijklmnopqrstuvwxyz012345"
	sampleStripe = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
	sampleGitLab = "glpat-" + "xxxxxxxxxxxxxxxxxxxx1234"
	sampleOpenAI = "sk-proj-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCD"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain text unchanged", "The model refused to answer.", "The model refused to answer."},
		{"empty", "", ""},
		{"email", "mail john.doe+x@example.co.uk now", "mail [REDACTED:email] now"},
		{"internationalized email", "jöhn@exämple.de", "[REDACTED:email]"},
		{"two emails", "a@b.io, c@d.org", "[REDACTED:email], [REDACTED:email]"},
		{"not an email", "user@localhost and @handle", "user@localhost and @handle"},
		{"aws access key id", "id " + sampleAWSKeyID + ".", "id [REDACTED:aws-access-key]."},
		{"aws secret assignment", "aws_secret_access_key = " + sampleAWSSecret, "aws_secret_access_key = [REDACTED:aws-secret-key]"},
		{"aws secret env", "AWS_SECRET_ACCESS_KEY=" + sampleAWSSecret, "AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-key]"},
		{"github classic", "token " + sampleGHP, "token [REDACTED:github-token]"},
		{"github oauth and server", sampleGHO + " " + sampleGHS, "[REDACTED:github-token] [REDACTED:github-token]"},
		{"github fine-grained", "pat=" + sampleGHPat, "pat=[REDACTED:github-token]"},
		{"slack bot", "slack: " + sampleSlack, "slack: [REDACTED:slack-token]"},
		{"slack user", sampleSlackUser, "[REDACTED:slack-token]"},
		{"slack webhook", "post to https://hooks.slack.com/services/T000/B000/XXXXXXXX ok", "post to [REDACTED:slack-webhook] ok"},
		{"atlassian", "jira " + sampleAtlassian, "jira [REDACTED:atlassian-token]"},
		{"jiraconnect key", "X " + sampleJCK + " Y", "X [REDACTED:jiraconnect-api-key] Y"},
		{"jwt", "id_token " + sampleJWT, "id_token [REDACTED:jwt]"},
		{"google", "key " + sampleGoogle, "key [REDACTED:google-api-key]"},
		{"stripe", sampleStripe, "[REDACTED:stripe-key]"},
		{"gitlab", sampleGitLab, "[REDACTED:gitlab-token]"},
		{"openai", "OPENAI " + sampleOpenAI, "OPENAI [REDACTED:openai-key]"},
		{"sk- inside a word is not a key", "task-abcdefghijklmnopqrstuvwxyz", "task-abcdefghijklmnopqrstuvwxyz"},
		{"bearer header", "Authorization: Bearer abc.def-ghi_123", "Authorization: Bearer [REDACTED:bearer-token]"},
		{"basic header", `-H "authorization: Basic dXNlcjpwYXNz"`, `-H "authorization: Basic [REDACTED:basic-auth]"`},
		{"header without scheme", "Proxy-Authorization: s3cr3tvalue", "Proxy-Authorization: [REDACTED:authorization]"},
		{"header keeps jwt type", "Authorization: Bearer " + sampleJWT, "Authorization: Bearer [REDACTED:jwt]"},
		{"json header", `{"Authorization":"Bearer abcdefghijklmnop"}`, `{"Authorization":"Bearer [REDACTED:bearer-token]"}`},
		{"bare bearer", "use bearer abcdefghijklmnop0123 here", "use bearer [REDACTED:bearer-token] here"},
		{"bearer prose", "the bearer of bad news", "the bearer of bad news"},
		{"pem block", "key:\n" + samplePEM + "\nafter", "key:\n[REDACTED:private-key]\nafter"},
		{"pem unterminated", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\nThe model said", "[REDACTED:private-key]\nThe model said"},
		{"pem encrypted headers", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIB\n", "[REDACTED:private-key]\n"},
		{"public key kept", "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----", "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----"},
		{"password assignment", "password=hunter2 next", "password=[REDACTED:password] next"},
		{"yaml secret", "client_secret: abc123", "client_secret: [REDACTED:secret]"},
		{"api key variants", "API_KEY=a1 x-api-key: b2 apikey => c3", "API_KEY=[REDACTED:api-key] x-api-key: [REDACTED:api-key] apikey => [REDACTED:api-key]"},
		{"token assignment", "token=tok123&next=1", "token=[REDACTED:token]&next=1"},
		{"go assignment", `dbPassword := "pa ss"`, `dbPassword := "[REDACTED:password]"`},
		{"json quoted with spaces", `{"password": "correct horse battery staple", "user": "bob"}`, `{"password": "[REDACTED:password]", "user": "bob"}`},
		{"escaped json", `{\"secret\": \"x y z\"}`, `{\"secret\": \"[REDACTED:secret]\"}`},
		{"single quoted", `pwd='a b'`, `pwd='[REDACTED:password]'`},
		{"unterminated quote", `password="abc`, `password="[REDACTED:password]`},
		{"max_tokens is not a token", "max_tokens=1024 tokens: 12", "max_tokens=1024 tokens: 12"},
		{"value on next line is not taken", "password:\nThe next line", "password:\nThe next line"},
		{"empty value", `password=""`, `password=""`},
		{"email value keeps email type", "password=bob@example.com", "password=[REDACTED:email]"},
		{"url credentials", "postgres://app:s3cret@db.internal:5432/x", "postgres://[REDACTED:url-credentials]@db.internal:5432/x"},
		{"high entropy hex", `session = "3f2a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a"`, `session = "[REDACTED:high-entropy]"`},
		{"high entropy base64", "X_SIG=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1u", "X_SIG=[REDACTED:high-entropy]"},
		{"uuid kept", "scan_id=550e8400-e29b-41d4-a716-446655440000", "scan_id=550e8400-e29b-41d4-a716-446655440000"},
		{"low entropy kept", "name=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", "name=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"},
		{"long word kept", "path=this_is_a_very_long_identifier_without_digits", "path=this_is_a_very_long_identifier_without_digits"},
		{"card number", "card 4111 1111 1111 1111 exp", "card [REDACTED:card-number] exp"},
		{"card dashes", "5500-0000-0000-0004", "[REDACTED:card-number]"},
		{"non-luhn number kept", "order 4111111111111112", "order 4111111111111112"},
		{"epoch millis kept", "ts 1700000000000", "ts 1700000000000"},
		{"invalid utf8", "a\xffb", "a\uFFFDb"},
		{"long s folds like s", "paſſword=x", "paſſword=[REDACTED:password]"},
		{"kelvin sign folds like k", "API_\u212AEY=abc", "API_\u212AEY=[REDACTED:api-key]"},
		{"pem with escaped newlines", `"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\nAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"`, `"[REDACTED:private-key]\n"`},
		{"pem unterminated escaped", `k="-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN\nBKcwggSj", next`, `k="[REDACTED:private-key]", next`},
		{"pem footer of another block far away", "-----BEGIN PRIVATE KEY-----\nMIIB\n" + strings.Repeat("words and more words\n", 2000) + "-----END PRIVATE KEY-----",
			"[REDACTED:private-key]\n" + strings.Repeat("words and more words\n", 2000) + "-----END PRIVATE KEY-----"},
		{"two pem blocks", samplePEM + "\nmid\n" + samplePEM, "[REDACTED:private-key]\nmid\n[REDACTED:private-key]"},
		{"marker text kept", "[REDACTED:email] and password=[REDACTED:password]", "[REDACTED:email] and password=[REDACTED:password]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.in)
			if got != tt.want {
				t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if again := Redact(got); again != got {
				t.Errorf("not idempotent: %q → %q", got, again)
			}
		})
	}
}

func TestRedactSizeCap(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"long words", strings.Repeat("lorem ipsum ", MaxRedactBytes/6)},
		{"expanding emails", strings.Repeat("a@b.co ", MaxRedactBytes/5)},
		{"no whitespace", strings.Repeat("x", MaxRedactBytes+10)},
		{"secret at the cut", strings.Repeat("y ", MaxRedactBytes/2-8) + sampleGHP + " tail"},
		{"multibyte", strings.Repeat("é😀 ", MaxRedactBytes/4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.in)
			if len(got) > MaxRedactBytes {
				t.Fatalf("len %d > %d", len(got), MaxRedactBytes)
			}
			if !strings.HasSuffix(got, TruncatedMarker) && got != TruncatedMarker[1:] {
				t.Errorf("truncated output does not end with the marker: …%q", got[max(0, len(got)-40):])
			}
			if !utf8.ValidString(got) {
				t.Error("invalid UTF-8")
			}
			if strings.Contains(got, "ghp_") {
				t.Error("partial token left at the cut")
			}
			if Redact(got) != got {
				t.Error("not idempotent after truncation")
			}
		})
	}
	short := strings.Repeat("z ", 100)
	if Redact(short) != short {
		t.Error("short text was changed")
	}
}

// Independent detectors for the fuzz oracle: the documented shapes, written separately from the
// rules so that a rule edited by mistake is caught.
var leakDetectors = map[string]*regexp.Regexp{
	"email":       regexp.MustCompile(`[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?)*\.\p{L}{2,}`),
	"aws":         regexp.MustCompile(`(?:AKIA|ASIA)[A-Z0-9]{16}`),
	"github":      regexp.MustCompile(`gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,}`),
	"slack":       regexp.MustCompile(`xox[abposr]-[A-Za-z0-9\-]{10,}`),
	"atlassian":   regexp.MustCompile(`ATATT[A-Za-z0-9_\-=]{20,}`),
	"jiraconnect": regexp.MustCompile(`jck_[A-Za-z0-9_\-]{43}`),
	"jwt":         regexp.MustCompile(`eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+`),
	"pem":         regexp.MustCompile(`-----BEGIN[A-Z ]*PRIVATE KEY`),
}

func leaks(s string) []string {
	var out []string
	for name, re := range leakDetectors {
		if m := re.FindString(s); m != "" {
			out = append(out, name+": "+m)
		}
	}
	return out
}

func FuzzRedact(f *testing.F) {
	seeds := []string{
		"", "plain", "john@example.com", sampleAWSKeyID, "aws_secret_access_key=" + sampleAWSSecret,
		sampleGHP, sampleGHPat, sampleSlack, sampleAtlassian, sampleJCK, sampleJWT, samplePEM,
		"Authorization: Bearer " + sampleJWT, "password: \"a b\"", `{\"token\": \"x\"}`,
		"4111 1111 1111 1111", "https://u:p@h.io/", "a@b.cosk-abcdefghijklmnopqrstuvwxyz",
		sampleAWSKeyID + "sk-abcdefghijklmnopqrstuvwx", "x" + sampleJCK + "@example.com",
		"password=[REDACTED:email]x", "Authorization: Bearer\n[TRUNCATED]",
		"-----BEGIN PRIVATE KEY-----\nMII", "key=" + strings.Repeat("a1B2", 10),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Redact(in)
		if again := Redact(out); again != out {
			t.Fatalf("not idempotent:\n in  %q\n out %q\n 2nd %q", in, out, again)
		}
		if len(out) > MaxRedactBytes || !utf8.ValidString(out) {
			t.Fatalf("output too long (%d) or invalid UTF-8", len(out))
		}
		if l := leaks(out); len(l) > 0 {
			t.Fatalf("output still contains %v\n in  %q\n out %q", l, in, out)
		}
	})
}
