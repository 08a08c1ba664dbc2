module github.com/clawgate/clawgate

go 1.26
