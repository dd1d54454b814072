"""Authorization: the canonical target (`target`), which route it is (`routes/`), whether it came from
another site (`csrf`), and whether the identity may use the route's verb (`authorizer` over
`sources/`, the static one compiling `policy` from `policy_file`)."""
