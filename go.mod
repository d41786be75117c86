module github.com/ember-vmm/ember

go 1.26.0

require golang.org/x/sys v0.50.0 // indirect
