# packaging/local.mk - what "make install" adds for running corrald as a
# service: the systemd unit (generated from corrald.service.in with the
# configured directories) into $(systemdsystemunitdir), and the settings
# file into $(sysconfdir)/default/corrald.  Both honour DESTDIR and
# $(prefix), so "make distcheck" installs them in its scratch prefix.
#
# The settings file is an administrator's file: an existing one is never
# overwritten (the new one goes beside it as corrald.dist), and uninstall
# removes it only while it is still the installed copy.
#
# "make installcheck" (run by distcheck) checks the installed tree with
# packaging/installcheck.sh.

EXTRA_DIST += packaging/corrald.service.in packaging/corrald.default \
	packaging/installcheck.sh

if INSTALL_SYSTEMD_UNIT
systemdsystemunit_DATA = packaging/corrald.service
endif
CLEANFILES += packaging/corrald.service

packaging/corrald.service: $(srcdir)/packaging/corrald.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) packaging && \
	sed -e 's|@bindir[@]|$(bindir)|g' \
	    -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	    $(srcdir)/packaging/corrald.service.in >$@.tmp && mv $@.tmp $@

corralddefaultdir = $(sysconfdir)/default

install-data-local: install-corrald-default
install-corrald-default:
	$(MKDIR_P) '$(DESTDIR)$(corralddefaultdir)'
	@if test -f '$(DESTDIR)$(corralddefaultdir)/corrald' && \
	    ! cmp -s '$(DESTDIR)$(corralddefaultdir)/corrald' \
	        '$(srcdir)/packaging/corrald.default'; then \
	    echo "keeping $(DESTDIR)$(corralddefaultdir)/corrald;" \
	         "the new one is corrald.dist"; \
	    $(INSTALL_DATA) '$(srcdir)/packaging/corrald.default' \
	        '$(DESTDIR)$(corralddefaultdir)/corrald.dist'; \
	else \
	    $(INSTALL_DATA) '$(srcdir)/packaging/corrald.default' \
	        '$(DESTDIR)$(corralddefaultdir)/corrald'; \
	fi

uninstall-local: uninstall-corrald-default
uninstall-corrald-default:
	@if cmp -s '$(DESTDIR)$(corralddefaultdir)/corrald' \
	        '$(srcdir)/packaging/corrald.default'; then \
	    rm -f '$(DESTDIR)$(corralddefaultdir)/corrald'; \
	fi
	rm -f '$(DESTDIR)$(corralddefaultdir)/corrald.dist'

installcheck-local: installcheck-corrald
installcheck-corrald: packaging/corrald.service
	$(SHELL) $(srcdir)/packaging/installcheck.sh \
	    '$(DESTDIR)' '$(bindir)' '$(libdir)' '$(includedir)' \
	    '$(pkgconfigdir)' '$(mandir)' '$(sysconfdir)' \
	    '$(systemdsystemunitdir)' '$(PACKAGE_VERSION)'

.PHONY: install-corrald-default uninstall-corrald-default \
	installcheck-corrald
