package api

// WaitNudgesIdle returns once no webhook inbox nudge is in flight, so a test can attribute the
// signals it observes to the requests it made.
func (s *Server) WaitNudgesIdle() { s.nudges.waitIdle() }
