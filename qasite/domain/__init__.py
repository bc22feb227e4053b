"""The Q&A domain: tables, rules of posts, votes and inbox, events, outbox and relay, search."""
