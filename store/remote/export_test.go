package remote

// SetPageSize makes List fetch pages of n keys, so that tests see several.
func SetPageSize(c *Client, n int) { c.pageSize = n }
