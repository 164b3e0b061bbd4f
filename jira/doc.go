// Package jira is jiraconnect's client for the Jira REST API: Jira Cloud (REST v3, Atlassian
// Document Format, OAuth 2.0 3LO through api.atlassian.com or an API token on the site) and Jira
// Data Center (REST v2, wiki markup, personal access tokens).
//
// # Shape
//
// A Client serves one connection (one site, one credential) and is built with New from a Config.
// The Temporal activities layer creates one per activity run, with a fresh CallStats so that the
// run can record how many Jira calls it made:
//
//	stats := &jira.CallStats{}
//	c, err := jira.New(jira.Config{Flavor: jira.Cloud, BaseURL: gateway, SiteURL: site,
//		Auth: jira.OAuth(tokenSource), Stats: stats, Logger: logger})
//	projects, err := c.ProjectCount(ctx)
//	open, err := c.ApproximateCount(ctx, jqlText) // build jqlText with package jql
//
// Operations: Myself, ProjectCount, ProjectStatuses, ApproximateCount, Search / SearchPages,
// GetIssue, CreateIssue, IssueTypes, CreateFields, ValidateCreateConfig, Transitions,
// TransitionTo, MoveTo, RegisterWebhooks, RefreshWebhooks, DeleteWebhooks, ListWebhooks. Each
// does a bounded number of calls that does not depend on the size of the site (SearchPages and
// the createmeta/webhook listings page up to a fixed budget and report ErrPageLimit instead of
// silently truncating).
//
// # Authentication
//
// APIToken (Cloud, Basic email:token), PAT (Data Center, Bearer) and OAuth (Cloud 3LO). OAuthApp
// does the authorization-server side: AuthorizeURL (audience=api.atlassian.com, prompt=consent),
// Exchange, AccessibleResources, CloudIDForSite and GatewayURL; Scopes(Features) yields the
// minimal scope set. TokenSource keeps one connection's tokens: it refreshes single-flight a
// little before expiry, hands every rotated pair to a PersistFunc before using it, and is forced
// to refresh once when Jira answers 401 (the request is then replayed once). The token endpoint
// is called with the JSON body Atlassian documents rather than through oauth2.Config.Exchange,
// which sends a form; golang.org/x/oauth2 provides the authorize URL and the TokenSource
// interface.
//
// # Errors
//
// Every failure is an *Error with a Kind (KindOf(err) reads it through wrapping). The client
// never sleeps or retries on 429/5xx: Temporal activities own retries, using Retryable and
// RetryDelay (from Retry-After, Beta-Retry-After, or an HTTP-date). Response bodies are bounded
// (Config.MaxResponseBytes) and malformed ones are errors, never panics or zero values.
//
// # Secrets
//
// Credentials are Secret values whose every formatting hook redacts. Error messages are built
// from the request method and path (never the query, headers or body) and Jira's own messages,
// with every known credential scrubbed from them, and logs carry no credential.
//
// Subpackages: jql builds JQL from quoted values; adf builds rich text as data; wiki renders it
// as escaped wiki markup for Data Center; webhook parses issue webhooks.
package jira
