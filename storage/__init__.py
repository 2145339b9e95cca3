"""SQL and nothing else: the database, its migrations, and repositories for credits, jobs and servers."""
