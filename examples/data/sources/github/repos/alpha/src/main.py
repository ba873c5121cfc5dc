def greet(name: str) -> str:
    """Say hello."""
    return f"hello, {name}"  


if __name__ == "__main__":
	print(greet("world"))
